"""sb.distributed on a LocalCluster of 2 worker processes: gradients and Adam steps equal the one-process ones."""
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import symbackprop as sb
from models_distributed import cross_entropy, tree_cross_entropy

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
    # one task per worker holding chunks: the parameters go to each of them
    groups = f._shards["groups"]
    assert 1 <= len(groups) <= 2 and sorted(i for g in groups for i in g) == list(range(8))
    assert f.bytes_per_step["parameters"] == len(groups) * sum(p.nbytes for p in params)


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
    client.wait_for_workers(2, timeout=120)  # the nanny's new worker, for the tests after this one


def tree_init(seed=3):
    rng = np.random.default_rng(seed)
    return {"hidden": [(rng.normal(size=(64, 24)) / 8, np.zeros(24)), (rng.normal(size=(24, 16)) / 5, np.zeros(16))],
            "act": "tanh", "out": {"W": rng.normal(size=(16, 10)) / 4, "b": np.zeros(10)}}


def tree_leaves(tree):
    if isinstance(tree, dict):
        return [x for v in tree.values() for x in tree_leaves(v)]
    if isinstance(tree, (tuple, list)):
        return [x for v in tree for x in tree_leaves(v)]
    return [] if isinstance(tree, (str, type(None))) else [tree]


def assert_same_structure(a, b):
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same_structure(a[k], b[k])
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for s, t in zip(a, b):
            assert_same_structure(s, t)


def test_a_parameter_tree_gets_a_gradient_tree_over_uneven_chunks(client, digits):
    x, y = digits
    params = tree_init()
    f = sb.distributed.value_and_grad(tree_cross_entropy, wrt="params", client=client)
    value, grad = f(params, *as_dask(x, y))
    expected_value, expected = sb.value_and_grad(tree_cross_entropy, wrt="params")(params, x, y)
    assert abs(value - expected_value) < 1e-12
    assert_same_structure(grad, expected)
    assert grad["act"] is None
    assert f.separation == sb.distributed.separable(tree_cross_entropy, params, x, y, wrt="params")
    for g, e in zip(tree_leaves(grad), tree_leaves(expected)):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-12)
    # the tree's leaves are the parameters shipped per step
    assert f.bytes_per_step["parameters"] == len(f._shards["groups"]) * sum(p.nbytes for p in tree_leaves(params))
    # a new static leaf is a new specialisation: set up again, still the one-process numbers
    params["act"] = "sin"
    value, grad = f(params, *as_dask(x, y))
    expected_value, expected = sb.value_and_grad(tree_cross_entropy, wrt="params")(params, x, y)
    assert abs(value - expected_value) < 1e-12
    for g, e in zip(tree_leaves(grad), tree_leaves(expected)):
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-12)


def test_adam_on_a_parameter_tree_updates_its_leaves_in_place(client, digits):
    x, y = digits
    params, reference = tree_init(), tree_init()
    arrays = tree_leaves(params)
    step = sb.distributed.train_step(tree_cross_entropy, sb.optim.Adam(lr=3e-3), wrt="params", client=client)
    one = sb.train_step(tree_cross_entropy, sb.optim.Adam(lr=3e-3), wrt="params")
    for _ in range(10):
        loss = step(params, x, y)
        expected_loss = one(reference, x, y)
        assert abs(loss - expected_loss) < 1e-10
    for p, q, e in zip(tree_leaves(params), arrays, tree_leaves(reference)):
        assert p is q  # updated in place, in the caller's tree
        np.testing.assert_allclose(p, e, rtol=0, atol=1e-10)
    assert step.steps == 10 and "m_params_hidden_0_0" in step.state


def test_a_float_leaf_cannot_be_updated_in_place_and_data_are_not_trees(client, digits):
    x, y = digits
    params = tree_init()
    params["out"]["b"] = 0.5
    step = sb.distributed.train_step(tree_cross_entropy, sb.optim.SGD(lr=1e-2), wrt="params", client=client)
    with pytest.raises(TypeError, match="`params_out_b` is a float: it must be a writeable NumPy array"):
        step(params, x, y)

    def two_inputs(w, xs, y):
        return np.mean((xs[0] @ w + xs[1] @ w - y) ** 2)
    f = sb.distributed.value_and_grad(two_inputs, wrt="w", client=client, data=("xs", "y"))
    with pytest.raises(ValueError, match="data argument `xs` is a tree"):
        f(np.zeros(64), (x, x), y[:, 0])


# Installed on the workers by the fault test (as source: the workers cannot import this file): each shard
# module, already exported, replaced in the worker's sys.modules by one whose entry points write a file
# `started-<pid>` and wait for the file `release` before they compute. A worker started afterwards (the
# nanny's replacement of a killed one) imports the real module and runs at once.
HOLD_SHARDS = """
import os, sys, time, types
for name, source in shipped:
    real = types.ModuleType(name)
    exec(compile(source, name + ".py", "exec"), real.__dict__)
    held = types.ModuleType(name)
    def entry(fn):
        def run(*args):
            open(os.path.join(folder, "started-%d" % os.getpid()), "w").close()
            deadline = time.monotonic() + 120
            while not os.path.exists(os.path.join(folder, "release")) and time.monotonic() < deadline:
                time.sleep(0.01)
            return fn(*args)
        return run
    held.value_and_grad = entry(real.value_and_grad)
    sys.modules[name] = held
"""


def wait_for(predicate, what, seconds=120):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def test_a_worker_killed_during_a_step_loses_nothing(client, digits, tmp_path):
    x, y = digits
    params = init(4)
    xd, yd = as_dask(x, y)
    f = sb.distributed.value_and_grad(cross_entropy, wrt=PARAMS, client=client)
    f(*params, xd, yd)  # set up: the data persisted, the modules shipped
    chunks = [c for chunk in f._shards["chunks"] for c in chunk]
    shipped = [future.result() for future, _ in f._shards["modules"].values()]
    client.run(exec, HOLD_SHARDS, {"shipped": shipped, "folder": str(tmp_path)})
    pids = client.run(os.getpid)  # worker address -> process id
    held = {key: set(where) for key, where in client.who_has(chunks).items()}

    with ThreadPoolExecutor(1) as pool:
        step = pool.submit(f, *params, xd, yd)
        wait_for(lambda: any(p.name.startswith("started-") for p in tmp_path.iterdir()), "a shard task to start")
        pid = int(next(p.name for p in tmp_path.iterdir() if p.name.startswith("started-"))[len("started-"):])
        lost = next(address for address, p in pids.items() if p == pid)
        os.kill(pid, signal.SIGKILL)  # the worker dies running one of this step's shard tasks
        assert not step.done()
        wait_for(lambda: lost not in client.scheduler_info()["workers"], "the scheduler to see the worker lost")
        (tmp_path / "release").touch()
        value, grads = step.result(timeout=300)

    expected_value, expected = sb.value_and_grad(cross_entropy, wrt=PARAMS)(*params, x, y)
    assert abs(value - expected_value) < 1e-12
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-12)
    # the chunks the lost worker held were recomputed from their graph, on the workers still alive
    on_lost = [key for key, where in held.items() if lost in where]
    assert on_lost, "the killed worker held none of the data"
    now = client.who_has(chunks)
    for key in on_lost:
        assert now[key] and lost not in now[key]
    assert all(future.status == "finished" for future in chunks)
    client.wait_for_workers(2, timeout=120)  # the nanny's new worker, for the tests after this one


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
