"""sb.check_grad: truthy when the compiled gradient agrees with finite differences, and says where it does not."""
import inspect

import numpy as np
import pytest
import sympy

import symbackprop as sb
import models
from planting import wrong_adjoint, wrong_derivative
from symbackprop import check
from symbackprop.primitives.linalg import MatMul
from test_gradients import CASES


def line_of(fn, text):
    """The line number of the first line of `fn`'s source containing `text`."""
    lines, first = inspect.getsourcelines(fn)
    return first + next(k for k, line in enumerate(lines) if text in line)


@pytest.mark.parametrize("name", ["mlp", "layernorm", "softmax_attention", "math_scalar", "loop_stacked"])
def test_agrees_on_models_whose_gradients_are_right(name, backend):
    fn, make, wrt = CASES[name]
    report = sb.check_grad(fn, *make(), wrt=wrt, backend=backend)
    assert report, str(report)
    assert [p.name for p in report.parameters] == [fn.__code__.co_varnames[i] for i in wrt]
    assert all(p.max_abs_error < 1e-6 for p in report.parameters), str(report)
    # agreeing gradients are not localised: no line is named
    assert report.localisation is None and report.culprit is None and "localised" not in str(report)


def step(x):
    return np.sum(np.where(x > 0, 1.0, 0.0) + 0.5 * x * x)


def test_reports_the_entries_a_kink_breaks(backend):
    # np.where's derivative is 0 away from the jump, but a central difference across it at x = 0 sees 1/(2h)
    x = np.array([0.7, 0.0, -0.3, 1.2])
    report = sb.check_grad(step, x, backend=backend)
    assert not report
    (p,) = report.parameters
    assert [e.index for e in p.failures] == [(1,)]
    worst = p.entries[0]
    assert worst.index == (1,) and worst.compiled == 0.0 and worst.numeric > 1e4
    text = str(report)
    assert "GRADIENTS DISAGREE" in text and "1 of 4 probed entries disagree" in text and "x[1]" in text
    # away from the jump the compiled gradient is x
    assert {e.index: e.compiled for e in p.entries}[(0,)] == pytest.approx(0.7)
    # localised to the np.where line, as a kink: the local rule is the convention, not a mistake
    culprit = report.culprit
    assert culprit is not None and culprit.kink and culprit.loc.line == line_of(step, "np.where")
    assert "not differentiable within the step" in text


def test_takes_a_compiled_function_and_its_wrt():
    g = sb.value_and_grad(models.line, wrt=("w", "b"))
    report = sb.check_grad(g, 0.3, -0.2, 1.5, 2.0)
    assert report and [p.name for p in report.parameters] == ["w", "b"]
    assert [p.shape for p in report.parameters] == [(), ()]


def test_samples_large_parameters_and_uses_float32_tolerances():
    r = np.random.default_rng(1)
    W = r.normal(size=(30, 20)).astype(np.float32)
    x = r.normal(size=(8, 30)).astype(np.float32)

    def loss(W, x):
        return np.mean(np.tanh(x @ W) ** 2)

    report = sb.check_grad(loss, W, x, max_entries=40)
    (p,) = report.parameters
    assert report and p.probed == 40 and len({e.index for e in p.entries}) == 40
    assert p.rtol > 1e-4  # float32: the compiled gradient is computed in float32


def test_a_wrong_gradient_is_caught():
    # the check must be able to fail on a real mismatch: hand it a gradient that is off by 1%
    p = check._check_parameter(lambda w: float(np.sum(w ** 3)), [np.array([1.0, 2.0])], 0, "w",
                               np.array([3.0, 12.0]) * 1.01, np.random.default_rng(0), None, None, 64)
    assert not p and len(p.failures) == 2 and p.entries[0].index == (1,)


# ---- localisation: a wrong local derivative planted through tests/planting.py ----------------------

def test_names_the_line_of_a_wrong_tanh_derivative(backend):
    fn, make, wrt = CASES["mlp"]
    args = make()
    with wrong_derivative("tanh", lambda call, i: 1 - call):  # tanh' planted as 1 - tanh(u), not 1 - tanh(u)**2
        report = sb.check_grad(fn, *args, wrt=wrt, backend=backend)
    assert not report
    assert [bool(p) for p in report.parameters] == [False, False, True, True]  # W1, b1 are below the tanh
    culprit = report.culprit
    assert culprit.loc.line == line_of(models.mlp, "np.tanh") and culprit.loc.text == "h = np.tanh(x @ W1 + b1)"
    assert not culprit.kink and "tanh" in culprit.operation
    assert abs(culprit.adjoint - culprit.numeric) > 1e-3 * abs(culprit.numeric)
    text = str(report)
    assert f"localised to {culprit.loc}: `h = np.tanh(x @ W1 + b1)`" in text
    assert f"{culprit.adjoint:+.10g}" in text and f"{culprit.numeric:+.10g}" in text
    # the operations after it (towards the loss) agree: it is the first failure from the loss backwards
    first = report.localisation.checks.index(culprit)
    assert all(report.localisation.checks[:first])
    # the hook is gone: the same check agrees again
    assert sb.check_grad(fn, *args, wrt=wrt, backend=backend)


def _db_too_big(right, node, gs, wants):
    da, db = right(node, gs, wants)
    return [da, None if db is None else db * 1.5]


def test_names_the_line_of_a_wrong_matmul_adjoint(backend):
    fn, make, wrt = CASES["mlp"]
    args = make()
    with wrong_adjoint(MatMul, _db_too_big):
        report = sb.check_grad(fn, *args, wrt=wrt, backend=backend)
    assert not report
    culprit = report.culprit
    # the product nearest the loss is h @ W2; its gradient toward W2 is the one planted wrong
    assert culprit.loc.line == line_of(models.mlp, "logits = h @ W2") and "@" in culprit.loc.text
    assert "np.dot(h, W2)" in culprit.operation and culprit.input == "W2" and not culprit.kink
    assert culprit.adjoint == pytest.approx(1.5 * culprit.numeric, rel=1e-6)
    failing = report.localisation.failures
    assert [(c.loc.line, c.input) for c in failing] == [(line_of(models.mlp, "logits = h @ W2"), "W2"),
                                                        (line_of(models.mlp, "np.tanh"), "W1")]
    assert "also disagreeing: models.py:" in str(report)
    assert sb.check_grad(fn, *args, wrt=wrt, backend=backend)


def layers(W, V, x):
    a = np.tanh(x @ W)
    b = np.sin(a @ V)
    return np.sum(b * b)


def test_a_wrong_derivative_deep_in_the_model_is_named_and_not_the_lines_after_it():
    # sin's derivative planted wrong: the gradient reaching the tanh line is wrong too, but its own rule is right
    r = np.random.default_rng(3)
    W, V, x = r.normal(size=(4, 3)), r.normal(size=(3, 2)), r.normal(size=(5, 4))
    with wrong_derivative("sin", lambda call, i: -sympy.cos(call.args[0])):
        report = sb.check_grad(layers, W, V, x, wrt=("W", "V"))
    assert not report and report.culprit.loc.line == line_of(layers, "np.sin")
    assert {c.loc.line for c in report.localisation.failures} == {line_of(layers, "np.sin")}


def test_cannot_tell_when_every_local_derivative_agrees():
    # tolerances of zero: the compiled gradient "disagrees" by rounding alone, which no rule explains
    fn, make, wrt = CASES["mlp"]
    report = sb.check_grad(fn, *make(), wrt=wrt, rtol=0, atol=0)
    assert not report and report.localisation is not None and report.culprit is None
    assert report.localisation.operations == 10 and all(report.localisation.checks)
    assert "not localised: the local derivative of each of the 10 operations agrees" in str(report)


def test_localisation_is_optional_and_runs_on_numpy_for_llvm():
    fn, make, wrt = CASES["mlp"]
    with wrong_derivative("tanh", lambda call, i: 1 - call):
        quiet = sb.check_grad(fn, *make(), wrt=wrt, localise=False)
        loud = sb.check_grad(fn, *make(), wrt=wrt, backend="llvm")
    assert not quiet and quiet.localisation is None and "localised" not in str(quiet)
    assert loud.localisation.backend == "numpy" and "float64, numpy backend" in str(loud)


@pytest.mark.parametrize("name", sorted(CASES))
def test_no_local_check_fails_on_a_right_model(name):
    # the localisation's own false alarms: every operation of every gradient-test model agrees locally
    fn, make, wrt = CASES[name]
    localisation = check.localise_disagreement(fn, make(), wrt)
    assert localisation.operations > 0
    assert not localisation.failures, "\n".join(map(str, localisation.failures))


def test_float32_models_are_localised_in_float64():
    fn, make, wrt = CASES["mlp"]
    args = [a.astype(np.float32) if isinstance(a, np.ndarray) else a for a in make()]
    with wrong_derivative("tanh", lambda call, i: 1 - call):
        report = sb.check_grad(fn, *args, wrt=wrt)
    assert not report and report.culprit.loc.line == line_of(models.mlp, "np.tanh")


def masked(W, x):
    a = np.sin(x @ W)
    v = np.where(a > 0.3, a, 0.0)
    u = np.where(v > 0, 2.0 * v, v)  # v is exactly 0 in places: there u has a corner (slope 2 or 1)
    return np.sum(u * u)


def test_a_wrong_rule_is_named_before_a_kink_nearer_the_loss():
    r = np.random.default_rng(5)
    W, x = r.normal(size=(4, 6)), r.normal(size=(5, 4))
    # np.where's derivative on its boundary is the branch the condition takes (1 here), not the mean of
    # the slopes a central difference measures: the local check of u fails there, and is marked a kink
    right = check.localise_disagreement(masked, [W, x], (0,))
    assert [(c.loc.line, c.kink) for c in right.failures] == [(line_of(masked, "u = np.where"), True)]
    with wrong_derivative("sin", lambda call, i: -sympy.cos(call.args[0])):
        report = sb.check_grad(masked, W, x)
    assert not report
    assert report.culprit.loc.line == line_of(masked, "np.sin") and not report.culprit.kink
    assert "also disagreeing" in str(report) and "at a kink" in str(report)


def logs(x):
    l = np.log(x)  # nan where x < 0: the np.where below drops those entries
    return np.sum(np.where(x > 0, l, 0.0))


def test_entries_a_later_where_drops_are_left_out_of_the_local_checks():
    x = np.array([0.5, -1.0, 2.0, -0.2, 1.5])
    localisation = check.localise_disagreement(logs, [x], (0,))
    assert localisation.operations == 3 and not localisation.failures, localisation.checks
    with wrong_derivative("log", lambda call, i: 2 / call.args[0]):
        report = sb.check_grad(logs, x)
    assert not report and report.culprit.loc.line == line_of(logs, "np.log") and not report.culprit.kink


def straight_through(x):
    q = x + sb.stop_gradient(np.round(x) - x)
    return np.sum(q * q)


def test_stop_gradient_is_not_blamed_and_is_named_when_nothing_else_explains():
    # plain NumPy differentiates through sb.stop_gradient (it is the identity there): the check fails, every
    # rule is right, and the report points at the stop_gradient
    report = sb.check_grad(straight_through, np.array([0.3, 1.2, -0.7]))
    assert not report and report.culprit is None
    assert report.localisation.stopped[0].line == line_of(straight_through, "sb.stop_gradient")
    text = str(report)
    assert "not localised" in text and "the model calls sb.stop_gradient (test_check_grad.py:" in text


def act(z):
    return np.tanh(z)


def with_a_helper(W, x):
    return np.sum(act(x @ W) * 2.0)


def test_names_the_lines_fused_into_a_kernel():
    # the helper's np.tanh is fused into its caller's kernel: the report names both lines
    r = np.random.default_rng(7)
    W, x = r.normal(size=(3, 2)), r.normal(size=(4, 3))
    with wrong_derivative("tanh", lambda call, i: 1 - call):
        report = sb.check_grad(with_a_helper, W, x)
    culprit = report.culprit
    assert culprit.loc.line == line_of(with_a_helper, "act(x @ W)")
    assert [loc.line for loc in culprit.fused] == [line_of(act, "np.tanh")]
    assert f"with, fused into it, {culprit.fused[0]}: `return np.tanh(z)`" in str(report)


# ---- parameter trees: localised as flat parameters are, the leaves named by their paths -----------------

def tree_mlp(params, x, y):
    (W1, b1), (W2, b2) = params["layers"]
    h = np.tanh(x @ W1 + b1)
    z = h @ W2 + b2
    return np.mean((z - y) ** 2)


def test_a_tree_parameter_is_localised_and_its_leaves_named_by_path(backend):
    fn, make, _ = CASES["mlp"]
    W1, b1, W2, b2, x, y = make()
    params = {"layers": [(W1, b1), (W2, b2)]}
    assert sb.check_grad(tree_mlp, params, x, y, backend=backend)
    with wrong_derivative("tanh", lambda call, i: 1 - call):
        report = sb.check_grad(tree_mlp, params, x, y, backend=backend)
    assert not report
    names = [p.name for p in report.parameters]
    assert names == ["params['layers'][0][0]", "params['layers'][0][1]", "params['layers'][1][0]",
                     "params['layers'][1][1]"]
    assert [bool(p) for p in report.parameters] == [False, False, True, True]
    culprit = report.culprit
    assert culprit.loc.line == line_of(tree_mlp, "np.tanh") and culprit.loc.text == "h = np.tanh(x @ W1 + b1)"
    text = str(report)
    assert "params['layers'][0][0][6, 5]: " in text and f"localised to {culprit.loc}" in text
    assert sb.check_grad(tree_mlp, params, x, y, backend=backend)
