"""sb.train_step(..., compute_dtype=) (issue 18 item 3): the forward and backward passes in bfloat16 or float16
on float32 master parameters updated in place; float16 with dynamic loss scaling."""
import pickle
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import symbackprop as sb
from symbackprop import training

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))


def mlp(W1, b1, W2, x, y):
    h = np.tanh(x @ W1 + b1)
    z = h @ W2
    z = z - np.max(z, axis=1, keepdims=True)
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return -np.mean(np.sum(y * logp, axis=1))


def steep(w, x):
    return 1000.0 * np.sum(w * x)  # gradient 1000*x: times the initial scale 2**15, past float16's 65504


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    params = [(rng.standard_normal((8, 16)) * 0.3).astype(np.float32), np.zeros(16, np.float32),
              (rng.standard_normal((16, 3)) * 0.3).astype(np.float32)]
    x = rng.standard_normal((64, 8)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[(x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5)]
    return params, x, y


def _train(compute_dtype, backend, steps=60):
    params, x, y = _problem()
    step = sb.train_step(mlp, sb.optim.SGD(lr=0.5), wrt=("W1", "b1", "W2"), backend=backend,
                         compute_dtype=compute_dtype)
    ids = [id(p) for p in params]
    losses = [float(step(*params, x, y)) for _ in range(steps)]
    assert [id(p) for p in params] == ids and all(p.dtype == np.float32 for p in params)  # updated in place
    return params, losses, step


@pytest.mark.parametrize("compute_dtype", ["bfloat16", "float16"])
def test_16_bit_compute_trains_like_float32(backend, compute_dtype):
    ref, ref_losses, _ = _train(None, backend)
    params, losses, step = _train(compute_dtype, backend)
    eps = float(np.finfo(np.dtype(ml_dtypes.bfloat16) if compute_dtype == "bfloat16" else np.float16).eps)
    assert losses[-1] < 0.2 * losses[0]
    assert abs(losses[-1] - ref_losses[-1]) < 4 * eps * ref_losses[-1]
    for p, r in zip(params, ref):  # measured: 0.1 to 0.52 eps relative after 60 steps
        assert 0 < np.max(np.abs(p - r)) < 4 * eps * np.max(np.abs(r))  # rounded, and close to the float32 run
    assert step.skipped_steps == 0
    assert step.steps == 60


def test_the_forward_and_backward_run_in_the_compute_dtype():
    params, x, y = _problem()
    step = sb.train_step(mlp, sb.optim.SGD(lr=0.1), wrt=("W1", "b1", "W2"), compute_dtype="bfloat16")
    loss = step(*params, x, y)
    assert type(loss) is ml_dtypes.bfloat16
    assert "Specialised for W1: bfloat16[8,16]" in step.source
    assert step.loss_scale == 1.0  # bfloat16 has float32's range: never scaled


def test_an_injected_overflow_skips_the_step_and_halves_the_scale(backend):
    params, x, y = _problem()
    step = sb.train_step(mlp, sb.optim.SGD(lr=0.1), wrt=("W1", "b1", "W2"), backend=backend,
                         compute_dtype="float16")
    step(*params, x, y)
    assert step.loss_scale == training.INIT_SCALE and not step.skipped
    before = [p.copy() for p in params]
    step.inject_overflow()
    step(*params, x, y)
    assert step.skipped and step.skipped_steps == 1 and step.steps == 1
    assert step.loss_scale == training.INIT_SCALE / 2
    assert all(np.array_equal(p, b) for p, b in zip(params, before))  # nothing applied
    step(*params, x, y)  # and the next step goes on
    assert not step.skipped and step.steps == 2
    assert not all(np.array_equal(p, b) for p, b in zip(params, before))


def test_the_scale_grows_after_a_run_of_good_steps():
    params, x, y = _problem()
    step = sb.train_step(mlp, sb.optim.SGD(lr=0.01), wrt=("W1", "b1", "W2"), compute_dtype="float16")
    step.growth_interval = 3
    step.inject_overflow(2)
    for _ in range(2):
        step(*params, x, y)
    assert step.loss_scale == training.INIT_SCALE / 4
    for k in range(3):
        step(*params, x, y)
    assert step.loss_scale == training.INIT_SCALE / 2 and step.good_steps == 0
    for k in range(6):
        step(*params, x, y)
    assert step.loss_scale == training.INIT_SCALE  # and no further: the largest a float16 seed holds


def test_a_real_overflow_is_found_and_the_scale_comes_down(backend):
    rng = np.random.default_rng(2)
    w, x = rng.standard_normal(50).astype(np.float32), (rng.standard_normal(50) + 3).astype(np.float32)
    step = sb.train_step(steep, sb.optim.SGD(lr=1e-6), wrt="w", backend=backend, compute_dtype="float16")
    start = w.copy()
    calls = 0
    while step.steps == 0:
        step(w, x)
        calls += 1
        assert calls < 20
    # 1000*|x| up to ~6000: the scaled gradient fits float16 (65504) from a scale of 8 down
    assert calls > 1 and step.skipped_steps == calls - 1 and step.loss_scale <= 8
    # the step taken (0.6e-3 to 6e-3) is lr times the gradient, to float16's rounding of it (about 2e-6 here)
    np.testing.assert_allclose(w, start - 1e-6 * 1000.0 * x, rtol=0, atol=1e-5)
    assert np.min(np.abs(w - start)) > 4e-4


def test_clipping_and_accumulation_apply_to_the_unscaled_gradients():
    params, x, y = _problem()
    ref = [p.copy() for p in params]
    clipped = sb.train_step(mlp, sb.optim.SGD(lr=1.0), wrt=("W1", "b1", "W2"), compute_dtype="float16",
                            clip_norm=1e-3)
    clipped(*params, x, y)
    moved = np.sqrt(sum(np.sum((p - r) ** 2) for p, r in zip(params, ref)))
    assert abs(moved - 1e-3) < 1e-5  # the global norm asked (lr 1)
    step = sb.train_step(mlp, sb.optim.SGD(lr=0.1), wrt=("W1", "b1", "W2"), compute_dtype="bfloat16", accumulate=2)
    before = [p.copy() for p in params]
    step(*params, x, y)
    assert all(np.array_equal(p, b) for p, b in zip(params, before)) and step.steps == 0
    step(*params, x, y)
    assert step.steps == 1 and not all(np.array_equal(p, b) for p, b in zip(params, before))


def test_mixed_precision_steps_pickle():
    params, x, y = _problem()
    step = sb.train_step(mlp, sb.optim.Adam(lr=1e-2), wrt=("W1", "b1", "W2"), compute_dtype="float16")
    step.inject_overflow()
    for _ in range(3):
        step(*params, x, y)
    assert {v.dtype for v in step.state.values() if isinstance(v, np.ndarray)} == {np.dtype(np.float32)}
    copy = pickle.loads(pickle.dumps(step))
    assert copy.loss_scale == step.loss_scale and copy.skipped_steps == 1 and copy.steps == step.steps
    twin = [p.copy() for p in params]
    step(*params, x, y)
    copy(*twin, x, y)
    assert all(np.array_equal(a, b) for a, b in zip(params, twin))


def test_bad_options_and_parameters():
    params, x, y = _problem()
    with pytest.raises(ValueError, match="compute_dtype is one of"):
        sb.train_step(mlp, sb.optim.SGD(lr=0.1), compute_dtype="int8")
    step = sb.train_step(mlp, sb.optim.SGD(lr=0.1), wrt="W1", compute_dtype="float16")
    with pytest.raises(TypeError, match="float32 master parameters; `W1` is a float16 array"):
        step(params[0].astype(np.float16), *params[1:], x, y)
    plain = sb.train_step(mlp, sb.optim.Adam(lr=0.1), wrt="W1")
    with pytest.raises(TypeError, match="float16 parameters .* compute_dtype='float16'"):
        plain(params[0].astype(np.float16), *params[1:], x, y)
    with pytest.raises(ValueError, match="has_aux"):
        sb.train_step(mlp, sb.optim.SGD(lr=0.1), compute_dtype="bfloat16", has_aux=True)


def test_digits_in_bfloat16_and_float16_within_a_point_of_float32():
    """The must-show: examples/digits_mlp.py --dtype bfloat16 / float16 (with an overflow injected at call 100)."""
    import digits_mlp

    reference = digits_mlp.main(plot=False)
    assert abs(digits_mlp.main(dtype="bfloat16", plot=False) - reference) <= 0.01
    assert abs(digits_mlp.main(dtype="float16", overflow_at=100, plot=False) - reference) <= 0.01


def widening(W, x):
    return np.sum(np.tanh(x @ W) * np.sqrt(2.0))  # np.sqrt(2.0): a float64 scalar, so the loss is float64


def test_float32_parameters_with_a_float64_update(backend):
    """The update of a float32 parameter computed in float64 is written back as float32 (the LLVM step wrote the
    float64 values over the float32 array in place: twice its bytes, a corrupted heap, found by benchmarks W6)."""
    rng = np.random.default_rng(8)
    W, x = rng.standard_normal((300, 40)).astype(np.float32), rng.standard_normal((20, 300)).astype(np.float32)
    g = sb.grad(widening)(W.astype(np.float64), x.astype(np.float64))
    step = sb.train_step(widening, sb.optim.SGD(lr=1e-3), wrt="W", backend=backend)
    expected = (W.astype(np.float64) - 1e-3 * g).astype(np.float32)
    step(W, x)
    assert W.dtype == np.float32
    np.testing.assert_allclose(W, expected, rtol=1e-5, atol=1e-6)
