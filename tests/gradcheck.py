"""The one finite-difference checker: float64 central differences, tolerances stated once."""
from __future__ import annotations

import numpy as np

EPS = 1e-6          # central-difference step, relative to max(1, |x|)
RTOL = 1e-5         # gradients agree with finite differences to this relative error...
ATOL = 1e-7         # ...or this absolute error (for entries near zero)
MAX_ENTRIES = 24    # coordinates probed per parameter (chosen at random beyond this)


def numerical_gradient(f, args, index, rng=None):
    """Central differences of scalar f(*args) with respect to args[index] (float64)."""
    rng = rng or np.random.default_rng(0)
    x = args[index]
    is_scalar = np.ndim(x) == 0
    base = np.array(x, dtype=np.float64)
    flat = base.reshape(-1)
    grad = np.full(flat.shape, np.nan)
    probe = np.arange(flat.size)
    if flat.size > MAX_ENTRIES:
        probe = np.sort(rng.choice(flat.size, MAX_ENTRIES, replace=False))
    for i in probe:
        h = EPS * max(1.0, abs(flat[i]))
        values = []
        for step in (h, -h):
            moved = flat.copy()
            moved[i] += step
            arg = float(moved[0]) if is_scalar and isinstance(x, float) else moved.reshape(base.shape)
            call = list(args)
            call[index] = arg
            with np.errstate(all="ignore"):  # the model in plain NumPy may warn on untaken branches
                values.append(float(f(*call)))
        grad[i] = (values[0] - values[1]) / (2 * h)
    return grad.reshape(base.shape), probe


def assert_gradients_match(f, gradfn_result, args, wrt, rtol=RTOL, atol=ATOL):
    """Check each gradient in `gradfn_result` (one per index in `wrt`) against central differences."""
    for g, index in zip(gradfn_result, wrt):
        expected, probe = numerical_gradient(f, args, index)
        got = np.asarray(g, dtype=np.float64).reshape(-1)[probe]
        want = expected.reshape(-1)[probe]
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol,
                                   err_msg=f"gradient of parameter {index} disagrees with finite differences")
