"""The command line (`python -m symbackprop show|export|explain|graph`), run as a subprocess.

Error paths run through `cli.main` in-process too (the same code returns the same
exit code, without a second of interpreter start-up each); one of each exit code
also goes through `python -m symbackprop`.
"""
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import sympy

import symbackprop as sb
from symbackprop import cli
from symbackprop.explain import backprop_table

MODELS = textwrap.dedent('''\
    import numpy as np


    def mse(w, b, x, y):
        y_hat = w*x + b
        return np.mean((y_hat - y)**2)


    def mlp(W1, b1, W2, b2, x, y):
        h = np.tanh(x @ W1 + b1)
        logits = h @ W2 + b2
        m = np.max(logits, axis=1, keepdims=True)
        z = logits - m
        logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
        return -np.mean(np.sum(y * logp, axis=1))


    def chain(w, x, y):
        z = w * x + 0.5
        h = np.tanh(z)
        s = 1 / (1 + np.exp(-h))
        r = np.log(s) * y + np.sqrt(w * w + 1.0)
        q = np.exp(r) / (1 + r ** 2)
        return np.sum(q)


    def layers(w, x, n=3, power=2):
        for i in range(n):
            w = np.tanh(w * x)
        return np.sum(w ** power)


    def rejected(x):
        if x > 0:
            x = x - 1
        return np.sum(x)
    ''')

#: the source expression of each named statement of `chain`, for SymPy's own diff
CHAIN = {"z": "w*x + 1/2", "h": "tanh(z)", "s": "1/(1 + exp(-h))", "r": "log(s)*y + sqrt(w*w + 1)",
         "q": "exp(r)/(1 + r**2)"}
CHAIN_PAIRS = {("z", "w"), ("h", "z"), ("s", "h"), ("r", "s"), ("r", "w"), ("q", "r")}

MSE = ["--arg", "w=float64[5]", "--arg", "b=float64[5]", "--arg", "x=float64[5]", "--arg", "y=float64[5]"]
MLP = ["--arg", "W1=float64[4,3]", "--arg", "b1=float64[3]", "--arg", "W2=float64[3,2]", "--arg", "b2=float64[2]",
       "--arg", "x=float64[6,4]", "--arg", "y=float64[6,2]", "--wrt", "W1,b1,W2,b2"]
CHAIN_ARGS = ["--arg", "w=float64[4]", "--arg", "x=float64[4]", "--arg", "y=float64[4]"]
LLVM_MISSING = ("import sys; sys.modules['symbackprop.backends.llvm'] = None; "
                "from symbackprop.cli import main; sys.exit(main(sys.argv[1:]))")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "cli_models.py").write_text(MODELS)
    (d / "cli_broken.py").write_text("def f(:\n    pass\n")
    (d / "cli_strings.py").write_text(textwrap.dedent('''\
        import numpy as np


        def act(w, x, kind="tanh"):
            h = np.tanh(w * x) if kind == "tanh" else np.maximum(w * x, 0.0)
            return np.sum(h)


        def with_aux(w, x):
            r = w * x
            return np.sum(r * r), {"largest": np.max(r)}
        '''))
    (d / "tree.json").write_text('{"W": []}')
    (d / "text.json").write_text('{"W": "flaot64[3]"}')
    (d / "bad.json").write_text("[1.0, 2.0")
    return d


def _env(**extra):
    env = dict(os.environ)
    root = str(Path(sb.__file__).resolve().parent.parent)  # the symbackprop these tests import
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("NO_COLOR", None)
    env.update(extra)
    return env


def _run(cwd, argv, env=None, code=None):
    command = [sys.executable, "-c", code, *argv] if code else [sys.executable, "-m", "symbackprop", *argv]
    return subprocess.run(command, cwd=cwd, env=env or _env(), capture_output=True, text=True, timeout=120)


def _invocations(work):
    m = "cli_models.py"
    no_dot = work / "empty_path"
    no_dot.mkdir(exist_ok=True)
    return {
        "export": (["export", f"{m}:mlp", *MLP, "-o", "mlp_grad.py"], {}, None),
        "explain_mse": (["explain", f"{m}:mse", *MSE, "--wrt", "w,b"], {}, None),
        "explain_chain": (["explain", f"{m}:chain", *CHAIN_ARGS], {}, None),
        "explain_mlp": (["explain", f"{m}:mlp", *MLP], {}, None),
        "show": (["show", f"{m}:mse", *MSE, "--wrt", "w,b"], {}, None),
        "show_memory": (["show", f"{m}:mlp", *MLP, "--memory"], {}, None),
        "bad_budget": (["show", f"{m}:mse", *MSE, "--memory-budget", "lots"], {}, None),
        "show_colour": (["show", f"{m}:mse", *MSE, "--wrt", "w,b", "--color", "always"], {}, None),
        "graph": (["graph", f"{m}:mlp", *MLP], {}, None),
        "graph_svg": (["graph", f"{m}:mse", *MSE, "-o", "mse.svg"], {}, None),
        "graph_svg_no_dot": (["graph", f"{m}:mse", *MSE, "-o", "nodot.svg"], {"PATH": str(no_dot)}, None),
        "usage": (["explain", f"{m}:mse", "--arg", "w=float64[5]"], {}, None),
        "argparse": (["explain"], {}, None),
        "rejected": (["show", f"{m}:rejected", "--arg", "x=float64[3]"], {}, None),
        "llvm_export_missing": (["export", f"{m}:mse", *MSE, "-o", "mse.so"], {}, LLVM_MISSING),
        "llvm_show_missing": (["show", f"{m}:mse", *MSE, "--backend", "llvm"], {}, LLVM_MISSING),
    }


@pytest.fixture(scope="module")
def runs(work):
    """Every subprocess of this module, started together: interpreter start-up dominates their time."""
    jobs = _invocations(work)
    with ThreadPoolExecutor(max_workers=max(2, (os.cpu_count() or 2) + 1)) as pool:
        futures = {name: pool.submit(_run, work, argv, _env(**env), code) for name, (argv, env, code) in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def models(work):
    return _load(work / "cli_models.py", "cli_models")


# ---- export ----------------------------------------------------------------------

def test_exported_module_matches_the_library(runs, work, models):
    result = runs["export"]
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "wrote mlp_grad.py"
    exported = _load(work / "mlp_grad.py", "cli_mlp_grad")
    r = np.random.default_rng(1)
    args = [r.normal(size=(4, 3)), r.normal(size=3), r.normal(size=(3, 2)), r.normal(size=2),
            r.normal(size=(6, 4)), np.eye(2)[r.integers(0, 2, 6)]]
    value, grads = exported.value_and_grad(*args)
    want_value, want_grads = sb.value_and_grad(models.mlp, wrt=("W1", "b1", "W2", "b2"))(*args)
    assert value == pytest.approx(want_value, rel=1e-12)
    assert exported.forward(*args) == pytest.approx(want_value, rel=1e-12)
    for got, want in zip(grads, want_grads):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_export_fixes_static_arguments_and_uses_defaults(work, models):
    assert cli.main(["export", f"{work / 'cli_models.py'}:layers", "--arg", "w=float32[3]",
                     "--arg", "x=float32[3]", "--arg", "n=2", "-o", str(work / "layers_grad.py")]) == 0
    exported = _load(work / "layers_grad.py", "cli_layers_grad")
    w, x = np.float32([0.1, -0.4, 0.7]), np.float32([1.5, 0.5, -2.0])
    value, grad = exported.value_and_grad(w, x, 2, 2)  # n given, power its default
    want_value, want_grad = sb.value_and_grad(models.layers)(w, x, 2)
    with pytest.raises(ValueError, match=r"n is 3 \(int\); this module was compiled for n=2"):
        exported.value_and_grad(w, x, 3, 2)
    with pytest.raises(ValueError, match="compiled for n=2"):  # the model's default n=3 is kept, and checked
        exported.value_and_grad(w, x)
    assert exported.value_and_grad(w, x, 2)[0] == value  # power=2, the model's default
    assert grad.dtype == np.float32
    np.testing.assert_allclose(grad, want_grad, rtol=1e-6)
    assert value == pytest.approx(want_value, rel=1e-6)


def test_export_shared_library_writes_its_header(work, capsys):
    out = work / "mse_grad.so"
    assert cli.main(["export", f"{work / 'cli_models.py'}:mse", *MSE, "--wrt", "w,b", "-o", str(out)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"wrote {out}", f"wrote {out.with_suffix('.h')}"]
    assert out.stat().st_size > 0 and "mse_value_and_grad" in out.with_suffix(".h").read_text()


# ---- explain ---------------------------------------------------------------------

def test_explain_mse_shows_the_textbook_table(runs):
    result = runs["explain_mse"]
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"cli_models\.py:5\s+y_hat = w\*x \+ b\s+y_hat = ", out)  # forward: line, source, output
    assert "dt1/dy_hat = 2*(y_hat - y)" in out                              # local derivative of (y_hat - y)**2
    assert "d_y_hat = d_t1 * 2*(y_hat - y) = 2*(y_hat - y)/5" in out        # with the mean's 1/n
    assert "dy_hat/dw = x" in out and "dy_hat/db = 1" in out
    assert "d_w = d_y_hat * x = 2*x*(y_hat - y)/5" in out
    assert "d_b = d_y_hat = 2*(y_hat - y)/5" in out
    backward = out[out.index("backward pass"):]
    steps = [int(line.split()[0]) for line in backward.splitlines()[2:] if line.strip()[:1].isdigit()]
    assert steps == sorted(steps, reverse=True)  # last operation first


def _locals(names):
    table = {n: sympy.Symbol(n, real=True) for n in names}
    table.update(tanh=sympy.tanh, exp=sympy.exp, log=sympy.log, sqrt=sympy.sqrt)
    return table


def test_printed_local_derivatives_match_sympy_diff_of_the_source(runs):
    result = runs["explain_chain"]
    assert result.returncode == 0, result.stderr
    names = _locals(["w", "x", "y", "z", "h", "s", "r", "q"])
    found = set()
    for out, wrt, text in re.findall(r"\bd(\w+)/d(\w+) = (.+?)\s{2,}d_", result.stdout):
        if out not in CHAIN:
            continue
        body = sympy.sympify(CHAIN[out], locals=names)
        printed = sympy.sympify(text, locals=names)
        # the compiler writes derivatives in terms of the forward output (tanh' = 1 - h**2): put it back
        printed = printed.subs(names[out], body)
        assert sympy.simplify(printed - sympy.diff(body, names[wrt])) == 0, (out, wrt, text)
        found.add((out, wrt))
    assert found == CHAIN_PAIRS
    assert "dh/dz = 1 - h**2" in result.stdout and "ds/dh = s*(1 - s)" in result.stdout


def test_structured_table_locals_are_the_derivatives_of_the_bodies(models):
    r = np.random.default_rng(0)
    f = sb.value_and_grad(models.mlp, wrt=("W1", "b1", "W2", "b2"))
    table = backprop_table(f, r.normal(size=(4, 3)), r.normal(size=3), r.normal(size=(3, 2)), r.normal(size=2),
                           r.normal(size=(6, 4)), np.eye(2)[[0, 1, 0, 1, 0, 1]])
    checked = 0
    for row in table.backward:
        if row.local is None:
            continue
        step = table.forward[row.step - 1]
        (body,) = step.bodies
        got = row.local.xreplace({table.symbols[row.output]: body})
        assert sympy.simplify(got - sympy.diff(body, table.symbols[row.input])) == 0, row
        checked += 1
    assert checked >= 5
    assert [g[0] for g in table.gradients] == ["W1", "b1", "W2", "b2"]


def test_explain_writes_matrix_rules_and_the_zero_sum_of_log_softmax(runs):
    out = runs["explain_mlp"].stdout
    # matrix rows print the adjoint the compiler emitted, as the generated code writes it
    assert "dt1/dW1: np.dot(x.T, g)" in out and "d_W1 = np.dot(x.T, d_t1)" in out
    assert "d_h = np.dot(d_t2, W2.T)" in out and "d_W2 = np.dot(h.T, d_t2)" in out
    assert "dh/dt1 = 1 - h**2" in out
    assert "d_b1 = (d_h * (1 - h**2)).sum(axis=0)" in out
    assert "d_logp = d_t3 * y = -y/6" in out
    assert "no gradient reaches m" in out  # the max-shift gets no gradient, as in the generated code
    assert "mlp(W1: float64[4,3]" in out


def test_explain_method_function_uses_defaults(models):
    from symbackprop.explain import explain
    text = explain(sb.grad(models.layers), np.ones(3), np.ones(3))
    assert "n=3, power=2" in text and "dw_1/dw = x*(1 - w_1**2)" in text
    f = sb.value_and_grad(models.mse, wrt=("w", "b"))
    f(np.ones(2), np.ones(2), np.ones(2), np.zeros(2))
    assert "d_w = d_y_hat * x = x*(y_hat - y)" in explain(f)  # no arguments: the last specialisation


# ---- show ------------------------------------------------------------------------

def test_show_prints_plain_source_when_piped(runs):
    result = runs["show"]
    assert result.returncode == 0, result.stderr
    assert "\x1b[" not in result.stdout
    compile(result.stdout, "shown.py", "exec")
    assert "def value_and_grad(w, b, x, y):" in result.stdout


def test_show_memory_prints_the_report_after_the_code(runs):
    result = runs["show_memory"]
    assert result.returncode == 0, result.stderr
    code, report = result.stdout.split("\nmemory of one call (numpy backend)\n")
    compile(code, "shown.py", "exec")
    assert "residuals kept:" in report and "peak live bytes:" in report


def test_a_budget_that_is_not_a_size_is_a_usage_error(runs):
    result = runs["bad_budget"]
    assert result.returncode == 2 and "--memory-budget" in result.stderr and "'lots' is not a size" in result.stderr


def test_show_highlights_on_request_without_changing_the_text(runs):
    coloured = runs["show_colour"].stdout
    assert "\x1b[" in coloured
    assert ANSI.sub("", coloured) == runs["show"].stdout


def test_highlighters_only_add_colour():
    source = sb.value_and_grad(lambda_free_model).specialise(np.ones(3)).source
    assert ANSI.sub("", cli.highlight_python(source)) == source
    ir = 'define i32 @"f"(ptr %".1") {\nentry:\n  %".2" = fadd double 1.0, 2.0 ; add\n  ret i32 0\n}\n'
    assert ANSI.sub("", cli.highlight_llvm(ir)) == ir and "\x1b[" in cli.highlight_llvm(ir)


def lambda_free_model(x):
    return np.sum(np.exp(x) * 2.0)  # a comment


# ---- graph -----------------------------------------------------------------------

_DOT_TOKEN = re.compile(r'\s+|//[^\n]*|/\*.*?\*/|(?P<tok>"(?:\\.|[^"\\])*"|->|[A-Za-z_][\w.]*|-?\d+(?:\.\d+)?|'
                        r'[{}\[\];,=])', re.S)


def parse_dot(text):
    """A small checker for the DOT subset we write: returns nodes, edges and cluster members."""
    tokens, pos = [], 0
    while pos < len(text):
        m = _DOT_TOKEN.match(text, pos)
        assert m, f"DOT: cannot read {text[pos:pos + 30]!r}"
        if m.group("tok"):
            tokens.append(m.group("tok"))
        pos = m.end()
    nodes, edges, clusters = {}, [], {}
    i = 0

    def take(expected=None):
        nonlocal i
        tok = tokens[i]
        assert expected is None or tok == expected, f"DOT: expected {expected!r}, got {tok!r} at token {i}"
        i += 1
        return tok

    def attrs():
        found = {}
        if i < len(tokens) and tokens[i] == "[":
            take("[")
            while tokens[i] != "]":
                key = take()
                take("=")
                found[key] = take().strip('"')
                if tokens[i] in (",", ";"):
                    take()
            take("]")
        return found

    def statements(cluster):
        while tokens[i] != "}":
            if tokens[i] == "subgraph":
                take()
                name = take() if tokens[i] != "{" else ""
                clusters[name] = set()
                take("{")
                statements(name)
                take("}")
            elif tokens[i] in ("graph", "node", "edge"):
                take()
                attrs()
            elif tokens[i + 1] == "=":
                take(), take("="), take()
            else:
                chain = [take()]
                while tokens[i] == "->":
                    take()
                    chain.append(take())
                a = attrs()
                if len(chain) == 1:
                    nodes[chain[0]] = a
                    if cluster:
                        clusters[cluster].add(chain[0])
                else:
                    edges.extend((x, y, a) for x, y in zip(chain, chain[1:]))
            if tokens[i] == ";":
                take()

    take("digraph")
    if tokens[i] != "{":
        take()
    take("{")
    statements(None)
    take("}")
    assert i == len(tokens), "DOT: text after the closing brace"
    for a, b, _ in edges:
        assert a in nodes and b in nodes, f"edge {a} -> {b} to an undeclared node"
    return nodes, edges, clusters


def test_graph_writes_dot_with_forward_and_backward_clusters(runs, work):
    result = runs["graph"]
    assert result.returncode == 0, result.stderr
    nodes, edges, clusters = parse_dot(result.stdout)
    forward, backward = clusters["cluster_forward"], clusters["cluster_backward"]
    assert forward and backward and not forward & backward
    labels = " ".join(n.get("label", "") for n in nodes.values())
    assert "h = np.tanh(t1 + b1)" in labels and "d_W1 = np.dot(x.T, d_t1)" in labels  # the names of `show`
    reused = {(a, b) for a, b, attr in edges if attr.get("style") == "dashed"}
    assert reused and all(b in backward and a not in backward for a, b in reused)
    reused_names = {attr["label"] for a, b, attr in edges if attr.get("style") == "dashed"}
    assert {"h", "e", "s", "x", "W2"} <= reused_names  # tanh' reuses h, softmax reuses e and s
    assert all(attr.get("style") != "dashed" for a, b, attr in edges if b in forward)
    if shutil.which("dot"):
        drawn = subprocess.run(["dot", "-Tsvg"], input=result.stdout, capture_output=True, text=True)
        assert drawn.returncode == 0, drawn.stderr


def test_graph_dot_file_is_the_same_text(work, runs):
    assert cli.main(["graph", f"{work / 'cli_models.py'}:mlp", *MLP, "-o", str(work / "g.dot")]) == 0
    assert (work / "g.dot").read_text() == runs["graph"].stdout


def test_graph_svg_needs_graphviz(runs, work):
    missing = runs["graph_svg_no_dot"]
    assert missing.returncode == 1
    assert "apt-get install graphviz" in missing.stderr and "-o graph.dot" in missing.stderr
    assert not (work / "nodot.svg").exists()
    drawn = runs["graph_svg"]
    if shutil.which("dot"):
        assert drawn.returncode == 0, drawn.stderr
        assert "<svg" in (work / "mse.svg").read_text()
    else:
        assert drawn.returncode == 1


# ---- errors: exit codes and messages ------------------------------------------------

def test_exit_codes_through_python_m(runs):
    assert runs["usage"].returncode == 2 and "missing --arg for b, x, y" in runs["usage"].stderr
    assert runs["argparse"].returncode == 2 and "MODEL" in runs["argparse"].stderr
    rejected = runs["rejected"]
    assert rejected.returncode == 1
    line = MODELS.splitlines().index("    if x > 0:") + 1
    assert f"cli_models.py:{line}: `if` on an array value (x > 0) is not supported" in rejected.stderr
    assert "Traceback" not in rejected.stderr and rejected.stdout == ""


def test_llvm_backend_missing_is_a_clear_error(runs):
    for name in ("llvm_export_missing", "llvm_show_missing"):
        result = runs[name]
        assert result.returncode == 1, (name, result.stderr)
        assert "LLVM backend" in result.stderr and "Traceback" not in result.stderr


ERRORS = [
    # (argv after the command's MODEL, exit code, message)
    (["explain", "nofile.py:mse"], 2, "no such file: nofile.py"),
    (["explain", "{m}"], 2, "MODEL must be FILE.py:FUNCTION"),
    (["explain", "{dir}/cli_models.txt:mse"], 2, "must name a .py file"),
    (["explain", "{m}:nope"], 2, "has no function `nope` (its functions: chain, layers, mlp, mse, rejected)"),
    (["explain", "{m}:mse", "--arg", "w=float64[5]"], 2, "missing --arg for b, x, y"),
    (["explain", "{m}:mse", "--arg", "w", *MSE[2:]], 2, "--arg 'w': expected NAME=TYPE"),
    (["explain", "{m}:mse", "--arg", "w=", *MSE[2:]], 2, "the type is missing"),
    (["explain", "{m}:mse", "--arg", "w=flaot64[5]", *MSE[2:]], 2, "unknown dtype `flaot64`"),
    (["explain", "{m}:mse", "--arg", "w=float64[5,a]", *MSE[2:]], 2, "dimensions must be non-negative integers"),
    (["explain", "{m}:mse", "--arg", "w=complex128[5]", *MSE[2:]], 2, "not complex128"),
    (["explain", "{m}:mse", "--arg", "w=[1, 2]", *MSE[2:]], 2, "cannot use a list"),
    (["explain", "{m}:mse", "--arg", "w=hello", *MSE[2:]], 2, "cannot differentiate with respect to `w` of type str"),
    (["explain", "{m}:mse", "--arg", "w=float46[5]", *MSE[2:]], 2, "unknown dtype `float46`"),
    (["explain", "{m}:mse", "--arg", "w=flaot64", *MSE[2:]], 2, "unknown dtype `flaot64`"),
    (["explain", "{m}:mse", "--arg", "w={dir}/missing.json", *MSE[2:]], 2, "missing.json: no such file"),
    (["explain", "{m}:mse", "--arg", "w={dir}/tree.json", *MSE[2:]], 2, "w['W'] is an empty list"),
    (["explain", "{m}:mse", "--arg", "w={dir}/text.json", *MSE[2:]], 2, "unknown dtype `flaot64`"),
    (["explain", "{m}:mse", "--arg", "w={dir}/bad.json", *MSE[2:]], 2, "cannot read it as JSON"),
    (["explain", "{m}:mse", *MSE, "--arg", "zz=3"], 2, "`mse` has no parameter `zz`"),
    (["explain", "{m}:mse", *MSE, "--arg", "w=float64[5]"], 2, "--arg w is given twice"),
    (["explain", "{m}:mse", *MSE, "--wrt", "q"], 2, "wrt names `q`, which is not a parameter"),
    (["explain", "{m}:mse", *MSE, "--wrt", "w,,b"], 2, "separated by commas"),
    (["explain", "{m}:mse", *MSE, "--wrt", "w,w"], 2, "repeats a parameter"),
    (["explain", "{m}:mse", "--arg", "w=float64[4]", *MSE[2:]], 2, "do not fit `mse`"),
    (["explain", "{m}:mse", "--arg", "w=int64[5]", *MSE[2:]], 2, "cannot differentiate with respect to `w`"),
    (["explain", "{m}:rejected", "--arg", "x=float64[3]"], 1, "`if` on an array value (x > 0) is not supported"),
    (["graph", "{m}:rejected", "--arg", "x=float64[3]"], 1, "Use np.any(x > 0) or np.all(x > 0)"),
    (["explain", "{dir}/cli_broken.py:f"], 1, "cli_broken.py:1: cannot load the model"),
    (["export", "{m}:mse", *MSE, "-o", "{dir}/out.txt"], 2, "export writes .py, .ll or .so"),
    (["export", "{m}:mse", *MSE, "-o", "{dir}/no/such/dir/out.py"], 1, "cannot write"),
    (["graph", "{m}:mse", *MSE, "-o", "{dir}/g.jpg"], 2, "graph writes .dot or .gv"),
]


@pytest.mark.parametrize("argv,code,message", ERRORS, ids=[f"{e[0][0]}-{e[2][:30]}" for e in ERRORS])
def test_error_paths(work, capsys, argv, code, message):
    argv = [a.format(m=work / "cli_models.py", dir=work) for a in argv]
    assert cli.main(argv) == code
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [[], ["explain"], ["export", "m.py:f"], ["draw", "m.py:f"],
                                  ["show", "m.py:f", "--backend", "cuda"]])
def test_argparse_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert "usage: symbackprop" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["show", "export", "explain", "graph"])
def test_help_for_each_command(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--arg NAME=TYPE" in out and "FILE.py:FUNCTION" in out and "example:" in out


# ---- argument types ------------------------------------------------------------------

@pytest.mark.parametrize("text,check", [
    ("x=float64[128,784]", lambda v: v.shape == (128, 784) and v.dtype == np.float64),
    ("x=float32[3, 2]", lambda v: v.shape == (3, 2) and v.dtype == np.float32),
    ("x=float64[]", lambda v: isinstance(v, np.ndarray) and v.shape == ()),
    ("x=float32", lambda v: isinstance(v, np.float32)),
    ("x=float64", lambda v: isinstance(v, np.float64)),
    ("x=float", lambda v: type(v) is float),
    ("x=int64[4]", lambda v: v.dtype == np.int64 and v.shape == (4,)),
    ("x=bool[2]", lambda v: v.dtype == bool),
    ("n=3", lambda v: v == 3 and type(v) is int),
    ("lr=0.1", lambda v: v == 0.1 and type(v) is float),
    ("flag=true", lambda v: v is True),
    ("flag=False", lambda v: v is False),
    ("mode='relu'", lambda v: v == "relu"),
    ("act=relu", lambda v: v == "relu"),
    ("act=leaky_relu", lambda v: v == "leaky_relu"),
    ("shape=(2, 3)", lambda v: v == (2, 3)),
])
def test_arg_types(text, check):
    name, value = cli.parse_arg(text)
    assert name == text.split("=")[0] and check(value)


@pytest.mark.parametrize("content,check", [
    ("[1.0, 2.5, 3]", lambda v: v.dtype == np.float64 and v.tolist() == [1.0, 2.5, 3.0]),
    ("[[1, 2], [3, 4]]", lambda v: v.dtype == np.int64 and v.shape == (2, 2)),
    ("[true, false]", lambda v: v.dtype == bool),
    ("0.25", lambda v: type(v) is float and v == 0.25),
    ("3", lambda v: type(v) is int and v == 3),
    ('"relu"', lambda v: v == "relu"),
    ("null", lambda v: v is None),
])
def test_arg_from_a_json_file(tmp_path, content, check):
    path = tmp_path / "value.json"
    path.write_text(content)
    name, value = cli.parse_arg(f"p={path}")
    assert name == "p" and check(value)


def test_a_json_tree_argument(tmp_path, capsys):
    """--arg params=tree.json: objects are dicts, lists of numbers arrays, type strings example arrays."""
    (tmp_path / "tree_model.py").write_text(
        "import numpy as np\n\n\ndef mlp(params, x):\n    h = x\n    for W, b in params['layers']:\n"
        "        h = np.tanh(h @ W + b)\n    return np.sum(h) * params['scale']\n")
    (tmp_path / "tree.json").write_text(
        '{"layers": [["float64[3,5]", [0.1, 0.2, 0.3, 0.4, 0.5]], ["float64[5,2]", "float64[2]"]], "scale": 0.5}')
    name, value = cli.parse_arg(f"params={tmp_path}/tree.json")
    assert value["layers"][0][0].shape == (3, 5) and value["layers"][0][1].dtype == np.float64
    assert value["layers"][1][1].shape == (2,) and value["scale"] == 0.5
    argv = ["export", f"{tmp_path}/tree_model.py:mlp", "--arg", f"params={tmp_path}/tree.json",
            "--arg", "x=float64[4,3]", "-o", str(tmp_path / "tm.so")]
    assert cli.main(argv) == 0
    header = (tmp_path / "tm.h").read_text()
    assert "const double* params_layers_1_1," in header and "const double* params_scale," in header
    assert "double* d_params_scale" in header


def test_string_and_json_arguments_reach_the_model(work, capsys):
    (work / "w.json").write_text("[0.5, -1.0, 2.0]")
    argv = ["show", f"{work}/cli_strings.py:act", "--arg", f"w={work}/w.json", "--arg", "x=float64[3]",
            "--arg", "kind=relu"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "np.maximum" in out and "np.tanh" not in out and "kind='relu'" in out
    assert cli.main(argv[:-1] + ["kind=tanh"]) == 0
    assert "np.tanh" in capsys.readouterr().out


def test_has_aux_models_on_the_command_line(work, capsys):
    argv = ["show", f"{work}/cli_strings.py:with_aux", "--arg", "w=float64[3]", "--arg", "x=float64[3]"]
    assert cli.main(argv + ["--has-aux"]) == 0
    assert "return (loss, {'largest': float(t2)}), d_w" in capsys.readouterr().out
    assert cli.main(argv) == 1
    assert "has_aux=True" in capsys.readouterr().err
