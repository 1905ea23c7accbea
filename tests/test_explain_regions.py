"""explain and graph show the value-dependent regions: each `if` with the branch it took and each `while`
with its trip count on the arguments given, and what each loop's tape stores per iteration.

The branches and trip counts expected here are found by running the model's own loop in plain Python
(counting as it goes), never read off the compiler; the tape is checked against the generated code.
"""
import inspect
import re

import numpy as np

import symbackprop as sb
from symbackprop import cli
from symbackprop.graph import to_dot
from symbackprop.regions_report import for_call


def if_on_reduction(x, w):
    s = np.sum(x * w)
    if s > 0:
        y = s * s
    else:
        y = -np.sin(s)
    return y


def newton_sqrt(a, x0):
    x = x0
    dx = x0
    while np.max(np.abs(dx)) > 1e-12:
        dx = (x * x - a) / (2 * x)
        x = x - dx
    return np.sum(x)


def if_inside_while(x, w):
    s = np.sum(x * w)
    k = 0
    while s < 10.0 and k < 50:
        if s > 2.0:
            s = s * 1.5
        else:
            s = s + np.sum(w * w)
        k += 1
    return s


def nested(x):
    s = np.sum(x)
    total = 0.0
    while s < 6.0:
        t = s
        while t < s * 3.0:
            t = t * 1.3 + 0.1
        total = total + t
        s = s + 1.7
    return total + s


def break_out_of_for(W, h):
    for i in range(8):
        h = np.tanh(W @ h)
        if np.sum(h * h) < 0.05:
            break
    return np.sum(h)


def line_of(fn, text):
    """The file line of the first line of `fn` containing `text`."""
    lines, start = inspect.getsourcelines(fn)
    return start + next(i for i, l in enumerate(lines) if text in l)


def section(text):
    """explain's control-flow section (its lines after the heading)."""
    head = "control flow on these arguments"
    assert head in text, text
    return text[text.index(head):].splitlines()[1:]


def row(lines, fn, text):
    """The control-flow row of the region at the line of `fn` containing `text`."""
    where = f"test_explain_regions.py:{line_of(fn, text)}"
    found = [l for l in lines if l.strip().startswith(where)]
    assert len(found) == 1, (where, lines)
    return found[0]


X = np.array([0.7, -0.2, 1.1])
W = np.array([0.5, 0.3, -0.4])


def test_if_shows_the_branch_each_call_takes():
    f = sb.value_and_grad(if_on_reduction, wrt=("x", "w"))
    seen = []
    for x, w in ((X, W), (X, -W)):
        s = float(np.sum(x * w))  # the condition, in plain NumPy
        text = row(section(f.explain(x, w)), if_on_reduction, "if s > 0")
        branch = "`if`" if s > 0 else "`else`"
        assert f"took the {branch} branch" in text, text
        seen.append(s > 0)
    assert seen == [False, True]  # the two calls take different branches


def newton_trips(a, x0):
    x, dx, k = x0, x0, 0
    while np.max(np.abs(dx)) > 1e-12:
        dx = (x * x - a) / (2 * x)
        x, k = x - dx, k + 1
    return k


def test_while_shows_its_trip_count_on_each_call():
    f = sb.value_and_grad(newton_sqrt, wrt=("a", "x0"))
    counts = []
    for a in (np.array([2.0, 3.0]), np.array([400.0, 0.01])):
        x0 = np.ones(2)
        k = newton_trips(a, x0)
        text = row(section(f.explain(a, x0)), newton_sqrt, "while np.max")
        assert re.search(rf"ran {k} iterations?$", text), text
        counts.append(k)
    assert counts[0] != counts[1]
    assert f.compilations == 1


def test_tape_report_matches_the_generated_code():
    f = sb.value_and_grad(newton_sqrt, wrt=("a", "x0"))
    a, x0 = np.array([2.0, 3.0, 5.0]), np.ones(3)
    lines = section(f.explain(a, x0))
    k = newton_trips(a, x0)
    stores = lines[lines.index(row(lines, newton_sqrt, "while np.max")) + 1]
    listed = re.findall(r"(\w+) float64\[3\] 24 B", stores)
    pushed = re.findall(r"(\w+)_tape\.append\((\w+)\)", f.source)
    assert listed and sorted(listed) == sorted(v for _, v in pushed)  # each value pushed, named as pushed
    assert all(t == v for t, v in pushed)
    per = 24 * len(listed)  # three float64[3] values
    assert f"= {per} B per iteration, {per * k} B on these arguments" in stores, stores


def test_if_inside_a_loop_counts_each_branch():
    f = sb.value_and_grad(if_inside_while, wrt=("x", "w"))
    for w in (W, W * 3.0):
        s, k, taken = float(np.sum(X * w)), 0, [0, 0]
        while s < 10.0 and k < 50:
            taken[0 if s > 2.0 else 1] += 1
            s = s * 1.5 if s > 2.0 else s + float(np.sum(w * w))
            k += 1
        lines = section(f.explain(X, w))
        assert re.search(rf"ran {k} iterations?$", row(lines, if_inside_while, "while s < 10.0"))
        branch = row(lines, if_inside_while, "if s > 2.0")
        assert f"the `if` branch {taken[0]} time" in branch and f"the `else` branch {taken[1]} time" in branch


def test_inner_loop_gives_its_trip_count_per_run():
    x = np.array([0.3, 0.4])
    s, inner = float(np.sum(x)), []
    while s < 6.0:
        t, n = s, 0
        while t < s * 3.0:
            t, n = t * 1.3 + 0.1, n + 1
        inner.append(n)
        s += 1.7
    f = sb.value_and_grad(nested)
    lines = section(f.explain(x))
    assert re.search(rf"ran {len(inner)} iterations?$", row(lines, nested, "while s < 6.0"))
    text = row(lines, nested, "while t < s * 3.0")
    assert f"ran {len(inner)} times: {', '.join(map(str, inner))} iterations ({sum(inner)} in all)" in text, text


def test_break_in_a_static_for_shows_where_it_stopped():
    W3 = np.eye(3) * 0.3
    h = np.array([0.3, -0.2, 0.4])
    ran, g = 0, h  # the iterations the loop runs, in plain NumPy
    for i in range(8):
        g, ran = np.tanh(W3 @ g), ran + 1
        if np.sum(g * g) < 0.05:
            break
    assert ran < 8
    lines = section(sb.value_and_grad(break_out_of_for, wrt=("W", "h")).explain(W3, h))
    guard = row(lines, break_out_of_for, "for i in range(8)")
    # the later iterations (2 to 8) each run only if no break did
    assert f"ran {ran - 1} time" in guard and f"skipped {8 - ran} time" in guard, guard


def test_graph_boxes_say_what_the_regions_did():
    f = sb.value_and_grad(if_inside_while, wrt=("x", "w"))
    dot = to_dot(f.specialise(X, W), regions=for_call(f, (X, W), {}))
    k = re.search(r"ran (\d+) iterations", "\n".join(section(f.explain(X, W)))).group(1)
    box = next(l for l in dot.splitlines() if "label=\"while" in l)
    assert f"ran {k} iterations" in box and "tape per iteration" in box and "if s > 2.0" in box, box
    assert "style=rounded" in box
    assert re.search(r"for _ in range\(trips\):\\lbackward of the while", dot)


def test_generated_code_has_no_probes():
    f = sb.value_and_grad(if_inside_while, wrt=("x", "w"))
    f.explain(X, W)
    assert "record(" not in f.specialise(X, W).source


def test_cli_explain_and_graph_show_the_regions(tmp_path, capsys):
    path = tmp_path / "loop_model.py"
    path.write_text(inspect.getsource(newton_sqrt).replace("def newton_sqrt", "def model")
                    .join(["import numpy as np\n\n\n", ""]))
    a = ["--arg", "a=float64[2]", "--arg", "x0=float64[2]"]
    assert cli.main(["explain", f"{path}:model", *a]) == 0
    out = capsys.readouterr().out
    line = path.read_text().splitlines().index("    while np.max(np.abs(dx)) > 1e-12:") + 1
    assert re.search(rf"loop_model\.py:{line}\s+while np\.max\(np\.abs\(dx\)\) > 1e-12:\s+ran \d+ iteration", out), out
    assert cli.main(["graph", f"{path}:model", *a]) == 0
    assert re.search(r"ran \d+ iteration", capsys.readouterr().out)


def test_explain_without_arguments_shows_the_regions_not_run():
    f = sb.value_and_grad(newton_sqrt, wrt=("a", "x0"))
    f(np.array([2.0, 3.0]), np.ones(2))
    lines = section(f.explain())  # the last specialisation: no arguments to run it on
    assert "give explain arguments" in row(lines, newton_sqrt, "while np.max")
    assert "48 B per iteration" in "\n".join(lines) and "on these arguments" not in "\n".join(lines)


def scalar_newton(a, x):
    while abs(x * x - a) > 1e-12:
        x = x - (x * x - a) / (2 * x)
    return x


def test_scalar_model_with_python_floats():
    x, k = 1.0, 0
    while abs(x * x - 3.0) > 1e-12:
        x, k = x - (x * x - 3.0) / (2 * x), k + 1
    lines = section(sb.value_and_grad(scalar_newton, wrt=("a", "x")).explain(3.0, 1.0))
    assert re.search(rf"ran {k} iterations$", row(lines, scalar_newton, "while abs")), lines


def carried_tree(p, x):
    h = x
    while np.sum(h * h) > 0.1:
        h = np.tanh(p["W"] @ h)
    return np.sum(h)


def test_tape_says_which_values_are_the_carried_ones_before_the_step():
    W = np.eye(2) * 0.5
    h, k = np.ones(2), 0
    while np.sum(h * h) > 0.1:
        h, k = np.tanh(W @ h), k + 1
    lines = section(sb.value_and_grad(carried_tree).explain({"W": W}, np.ones(2)))
    stores = lines[lines.index(row(lines, carried_tree, "while np.sum")) + 1]
    # d(W @ h)/dW reads h before the step, tanh' reads h after it: both pushed, told apart
    assert "h float64[2] 16 B (its value before the step)" in stores and "h float64[2] 16 B (from" in stores
    assert f"= 32 B per iteration, {32 * k} B on these arguments" in stores, stores
