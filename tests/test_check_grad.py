"""sb.check_grad: truthy when the compiled gradient agrees with finite differences, and says where it does not."""
import numpy as np
import pytest

import symbackprop as sb
import models
from test_gradients import CASES


@pytest.mark.parametrize("name", ["mlp", "layernorm", "softmax_attention", "math_scalar", "loop_stacked"])
def test_agrees_on_models_whose_gradients_are_right(name, backend):
    fn, make, wrt = CASES[name]
    report = sb.check_grad(fn, *make(), wrt=wrt, backend=backend)
    assert report, str(report)
    assert [p.name for p in report.parameters] == [fn.__code__.co_varnames[i] for i in wrt]
    assert all(p.max_abs_error < 1e-6 for p in report.parameters), str(report)


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
    from symbackprop import check
    p = check._check_parameter(lambda w: float(np.sum(w ** 3)), [np.array([1.0, 2.0])], 0, "w",
                               np.array([3.0, 12.0]) * 1.01, np.random.default_rng(0), None, None, 64)
    assert not p and len(p.failures) == 2 and p.entries[0].index == (1,)
