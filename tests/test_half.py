"""float16 and bfloat16 models (issue 18 item 2): stored in 16 bits, computed in float32, results and gradients
in the parameters' dtype, on both backends.

Finite differences in 16 bits would measure the rounding, not the gradient: each 16-bit result is compared
with the float64 result of the same (16-bit-rounded) inputs, within a few of the dtype's rounding steps
(symbackprop/dtypes.py `tolerance`), and the backends with each other.
"""
import sys

import ml_dtypes
import numpy as np
import pytest

import symbackprop as sb
from symbackprop import dtypes

HALVES = [np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)]


def mlp(W1, b1, W2, x, y):
    h = np.tanh(x @ W1 + b1)
    logits = h @ W2
    m = np.max(logits, axis=1, keepdims=True)
    z = logits - m
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return -np.mean(np.sum(y * logp, axis=1))


def statistics(x, w):
    centred = x - np.mean(x, axis=0)
    return np.sum(np.var(centred * w, axis=0)) + np.mean(np.sqrt(x * x + 1.0))


def mean_of(x):
    return np.mean(x)


def _mlp_args(rng):
    W1 = rng.standard_normal((6, 16)) * 0.4
    b1 = rng.standard_normal(16) * 0.1
    W2 = rng.standard_normal((16, 4)) * 0.4
    x = rng.standard_normal((32, 6))
    y = np.eye(4)[rng.integers(0, 4, 32)]
    return [W1, b1, W2, x, y]


def _stat_args(rng):
    return [rng.standard_normal((64, 5)) * 3 + 1, rng.standard_normal(5)]


CASES = [(mlp, _mlp_args, (0, 1, 2)), (statistics, _stat_args, (0, 1))]


def _relative(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


@pytest.mark.parametrize("dtype", HALVES, ids=str)
@pytest.mark.parametrize("model, make, wrt", CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_16_bit_against_float64(backend, dtype, model, make, wrt):
    args = [a.astype(dtype) for a in make(np.random.default_rng(3))]
    # the reference: the same 16-bit numbers, computed in float64
    ref_loss, ref_grads = sb.value_and_grad(model, wrt=wrt)(*[a.astype(np.float64) for a in args])
    loss, grads = sb.value_and_grad(model, wrt=wrt, backend=backend)(*args)
    assert type(loss) is dtype.type
    tol = dtypes.tolerance(dtype)
    assert _relative(loss, ref_loss) < tol
    for g, r, i in zip(grads, ref_grads, wrt):
        assert g.dtype == dtype and g.shape == args[i].shape
        assert _relative(g, r) < 2 * tol, (i, _relative(g, r))


@pytest.mark.parametrize("dtype", HALVES, ids=str)
def test_backends_agree(dtype):
    args = [a.astype(dtype) for a in _mlp_args(np.random.default_rng(5))]
    (l1, g1), (l2, g2) = (sb.value_and_grad(mlp, wrt=(0, 1, 2), backend=b)(*args) for b in ("numpy", "llvm"))
    assert _relative(l1, l2) <= float(np.finfo(dtype).eps)  # one rounding of a float32 apart at most
    for a, b in zip(g1, g2):
        assert _relative(a, b) <= float(np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", HALVES, ids=str)
def test_mean_of_many_ones_accumulates_in_float32(backend, dtype):
    # float16 arithmetic would overflow the sum at 65504 (NumPy's own np.sum gives inf); bfloat16's stops at 256
    x = np.ones(100_000, dtype)
    loss, grad = sb.value_and_grad(mean_of, backend=backend)(x)
    assert loss == 1.0 and type(loss) is dtype.type
    assert grad.dtype == dtype and np.all(grad == dtype.type(1e-5))


@pytest.mark.parametrize("dtype", HALVES, ids=str)
def test_axis_sums_accumulate_in_float32(backend, dtype):
    def column_sums(x):
        return np.sum(np.sum(x, axis=0) * 0.001)

    x = np.ones((3000, 2), dtype)  # NumPy's float16 axis sum stops at 2048, bfloat16's at 256
    loss = sb.value_and_grad(column_sums, backend=backend)(x)[0]
    assert abs(float(loss) - 6.0) <= 6.0 * float(np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", HALVES, ids=str)
def test_generated_numpy_code_widens_and_narrows(dtype):
    f = sb.value_and_grad(mlp, wrt=(0, 1, 2))
    f(*[a.astype(dtype) for a in _mlp_args(np.random.default_rng(0))])
    name = "ml_dtypes.bfloat16" if dtype != np.float16 else "np.float16"
    assert "W1_32 = W1.astype(np.float32)" in f.source  # a product's operand: a float32 copy
    assert f"h = np.tanh(t2.astype(np.float32) + b1_32).astype({name})" in f.source  # computed in 32, stored in 16
    assert "d_t2 = d_h_32*(1 - h.astype(np.float32)**2)" in f.source  # the 16-bit residual, read as float32
    assert f".astype({name})" in f.source
    assert ("import ml_dtypes" in f.source) == (dtype != np.float16)


@pytest.mark.parametrize("dtype", HALVES, ids=str)
def test_jvp_and_vjp_in_16_bits(backend, dtype):
    args = [a.astype(dtype) for a in _stat_args(np.random.default_rng(4))]
    wide = [a.astype(np.float64) for a in args]
    t = np.linspace(-1, 1, 5).astype(dtype)
    value, tangent = sb.jvp(statistics, wrt="w", backend=backend)(*args, tangents=t)
    ref_value, ref_tangent = sb.jvp(statistics, wrt="w")(*wide, tangents=t.astype(np.float64))
    assert type(value) is dtype.type and type(tangent) is dtype.type
    assert _relative(tangent, ref_tangent) < dtypes.tolerance(dtype)
    value, (gx, gw) = sb.vjp(statistics, wrt=("x", "w"), backend=backend)(*args, cotangent=dtype.type(2))
    _, (rx, rw) = sb.vjp(statistics, wrt=("x", "w"))(*wide, cotangent=2.0)
    assert gx.dtype == gw.dtype == dtype
    assert _relative(gx, rx) < 2 * dtypes.tolerance(dtype) and _relative(gw, rw) < 2 * dtypes.tolerance(dtype)


@pytest.mark.parametrize("dtype", HALVES, ids=str)
def test_residuals_are_kept_in_16_bits(dtype):
    args = _mlp_args(np.random.default_rng(0))
    wide = sb.value_and_grad(mlp, wrt=(0, 1, 2)).memory(*[a.astype(np.float32) for a in args])
    half = sb.value_and_grad(mlp, wrt=(0, 1, 2)).memory(*[a.astype(dtype) for a in args])
    assert "h         test_half.py:21          2048" in str(wide)  # 32 x 16 float32
    assert "h         test_half.py:21          1024" in str(half)  # the same in 16 bits


def test_bfloat16_export_imports_ml_dtypes(tmp_path):
    args = [a.astype(ml_dtypes.bfloat16) for a in _stat_args(np.random.default_rng(1))]
    f = sb.value_and_grad(statistics, wrt=(0, 1))
    path = f.export(str(tmp_path / "stats.py"), *args)
    text = open(path).read()
    assert "import ml_dtypes\n" in text
    namespace = {}
    exec(compile(text, path, "exec"), namespace)
    loss, grads = namespace["value_and_grad"](*args)
    ref = f(*args)
    assert loss == ref[0] and all(np.array_equal(a, b) for a, b in zip(grads, ref[1]))


@pytest.mark.parametrize("dtype", HALVES, ids=str)
def test_check_grad_of_a_16_bit_model(backend, dtype):
    args = [a.astype(dtype) for a in _mlp_args(np.random.default_rng(6))]
    assert sb.check_grad(mlp, *args, wrt=("W1", "W2"), backend=backend)


def test_missing_ml_dtypes_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"symbackprop\[bf16\]"):
        dtypes.bfloat16()
