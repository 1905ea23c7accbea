"""sb.distributed on a LocalCluster of 2 worker processes: gradients and Adam steps equal the one-process ones."""
import os
import signal
import time

import numpy as np
import pytest

import symbackprop as sb
from models_distributed import cross_entropy

# the test command installs the `distributed` and `examples` extras (Dask; scikit-learn's bundled digits):
# a missing one is an error here, never a skip
import dask.array as da  # noqa: E402
import distributed  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

PARAMS = ("W1", "b1", "W2", "b2")
CHUNKS = (100, 300, 97, 250, 200, 350, 150, 350)  # 8 uneven chunks of the 1797 digits


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return d.data / 16.0, np.eye(10)[d.target]


def init(seed=0, hidden=32):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(64, hidden)) / 8, np.zeros(hidden), rng.normal(size=(hidden, 10)) / 6, np.zeros(10)]


def as_dask(x, y):
    return da.from_array(x, chunks=(CHUNKS, 64)), da.from_array(y, chunks=(CHUNKS, 10))


def test_gradient_over_8_uneven_chunks_is_the_one_process_gradient(client, digits):
    x, y = digits
    params = init()
    f = sb.distributed.value_and_grad(cross_entropy, wrt=PARAMS, client=client)
    value, grads = f(*params, *as_dask(x, y))
    expected_value, expected = sb.value_and_grad(cross_entropy, wrt=PARAMS)(*params, x, y)
    assert abs(value - expected_value) < 1e-12
    for g, e in zip(grads, expected):
        assert g.shape == e.shape and g.dtype == e.dtype
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-12)
    assert len(f._shards["modules"]) == 7  # one exported module per distinct chunk shape
    assert f.bytes_per_step["parameters"] == 2 * sum(p.nbytes for p in params)


def test_numpy_data_are_scattered_and_workers_import_only_numpy(client, digits):
    x, y = digits
    params = init(1)
    f = sb.distributed.value_and_grad(cross_entropy, wrt=("W2", "b2"), client=client, data=("x", "y"))
    value, (gW2, gb2) = f(*params, x, y)
    _, (eW2, eb2) = sb.value_and_grad(cross_entropy, wrt=("W2", "b2"))(*params, x, y)
    np.testing.assert_allclose(gW2, eW2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(gb2, eb2, rtol=0, atol=1e-12)
    # the workers ran the exported module: NumPy, never the compiler
    assert not any(client.run(eval, "'symbackprop' in __import__('sys').modules").values())


def one_process_adam(x, y, steps):
    params = init(2)
    step = sb.train_step(cross_entropy, sb.optim.Adam(lr=3e-3), wrt=PARAMS)
    losses = [step(*params, x, y) for _ in range(steps)]
    return params, losses


@pytest.fixture(scope="module")
def reference(digits):
    return one_process_adam(*digits, 50)


def test_50_adam_steps_end_at_the_one_process_parameters(client, digits, reference):
    params = init(2)
    step = sb.distributed.train_step(cross_entropy, sb.optim.Adam(lr=3e-3), wrt=PARAMS, client=client)
    losses = step.run(*params, *as_dask(*digits), steps=50, progress=False)
    expected, expected_losses = reference
    np.testing.assert_allclose(losses, expected_losses, rtol=0, atol=1e-10)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p, e, rtol=0, atol=1e-10)
    assert step.steps == 50


def test_a_worker_killed_mid_training_loses_nothing(client, digits, reference):
    params = init(2)
    x, y = digits
    step = sb.distributed.train_step(cross_entropy, sb.optim.Adam(lr=3e-3), wrt=PARAMS, client=client)
    for i in range(50):
        if i == 20:  # terminate one worker process; its nanny starts another, Dask recomputes what it held
            pids = client.run(os.getpid)
            os.kill(sorted(pids.values())[0], signal.SIGKILL)
        step(*params, x, y)
    expected, _ = reference
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p, e, rtol=0, atol=1e-10)


def test_row_mixing_model_is_rejected_before_anything_runs(client, digits):
    from test_separable import batch_norm, line_of
    f = sb.distributed.value_and_grad(batch_norm, client=client)
    with pytest.raises(sb.CompileError) as e:
        f(np.zeros(64), digits[0])
    assert e.value.loc.line == line_of(batch_norm, "row mixing")


def test_an_unreachable_scheduler_is_an_error_within_the_timeout():
    start = time.monotonic()
    with pytest.raises(ConnectionError, match="could not reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        sb.distributed.value_and_grad(cross_entropy, client="tcp://127.0.0.1:9", timeout=2)
    assert time.monotonic() - start < 30  # a bound on a hang, not a timing
