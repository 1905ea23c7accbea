"""Batch separability (passes/separable.py): the loss splits over the data rows, or a CompileError names the line."""
import subprocess
import sys

import numpy as np
import pytest

import symbackprop as sb
from models_distributed import cross_entropy, line_of

rng = np.random.default_rng(0)
W1, b1 = rng.normal(size=(64, 16)), np.zeros(16)
W2, b2 = rng.normal(size=(16, 10)), np.zeros(10)
x, y = rng.normal(size=(30, 64)), np.eye(10)[rng.integers(0, 10, 30)]
w = rng.normal(size=64)
PARAMS = ("W1", "b1", "W2", "b2")


def batch_norm(w, x):
    h = x @ w
    h = h - np.mean(h)  # row mixing: a batch statistic
    return np.mean(h ** 2)


def running_sum(w, x):
    return np.sum(np.cumsum(x @ w))  # row mixing: each partial sum reads the rows before


def gram(w, x):
    return np.sum((x.T @ x) @ w)  # row mixing: the product contracts the batch axis


def batch_max(w, x):
    return np.sum(np.max(x, axis=0) * w)  # row mixing: a max over the batch


def log_of_sum(w, x):
    return np.log(np.sum(np.exp(x @ w)))  # row mixing: a non-linear function of the sum


def regularised(w, x):
    return np.mean((x @ w) ** 2) + 0.1 * np.sum(w * w)


def summed(w, x):
    return 0.5 * np.sum(np.tanh(x @ w) ** 2)


def test_the_digits_mlp_is_a_mean_over_rows():
    s = sb.distributed.separable(cross_entropy, W1, b1, W2, b2, x, y, wrt=PARAMS)
    assert s.rows == 30 and not s.offset
    assert s.scale == pytest.approx(-1 / 30, rel=1e-15)


def test_sums_and_regularisers():
    assert sb.distributed.separable(summed, w, x).scale == 0.5
    s = sb.distributed.separable(regularised, w, x)
    assert s.offset and s.scale == pytest.approx(1 / 30)


@pytest.mark.parametrize("model, words", [
    (batch_norm, "batch statistic"),
    (running_sum, "rows"),
    (gram, "contracts the batch axis"),
    (batch_max, "np.max over the batch axis"),
    (log_of_sum, "non-linear function of a sum"),
])
def test_row_mixing_models_are_rejected_at_their_line(model, words):
    with pytest.raises(sb.CompileError) as e:
        sb.distributed.separable(model, w, x)
    assert e.value.loc.line == line_of(model, "row mixing")
    assert words in str(e.value)
    assert "sum or mean over axis 0" in str(e.value)


def test_data_names_are_checked():
    with pytest.raises(ValueError, match="not a parameter"):
        sb.distributed.separable(summed, w, x, data="z")
    with pytest.raises(ValueError, match="both differentiated"):
        sb.distributed.separable(summed, w, x, data="w")


def test_import_symbackprop_does_not_import_dask():
    code = "import sys, symbackprop; assert not [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_missing_dask_names_the_extra():
    code = ("import sys; sys.modules['distributed'] = None; import symbackprop as sb\n"
            "try:\n    sb.distributed.value_and_grad(lambda w: w)\nexcept ImportError as e:\n"
            "    assert 'symbackprop[distributed]' in str(e), e\nelse:\n    raise SystemExit('no ImportError')")
    subprocess.run([sys.executable, "-c", code], check=True)
