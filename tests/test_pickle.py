"""Compiled functions and train steps pickle with plain pickle: the model by reference, options and state."""
import multiprocessing
import pickle

import numpy as np
import pytest

import symbackprop as sb


def regression(W, b, x, y):
    h = np.tanh(x @ W + b)
    return 0.5 * np.mean(np.sum((h - y) ** 2, axis=1))


@sb.value_and_grad(wrt=("W", "b"))
def decorated(W, b, x, y):
    return np.sum((x @ W + b - y) ** 2)


@sb.train_step(optimizer=sb.optim.SGD(lr=0.05, momentum=0.9), wrt=("W", "b"))
def decorated_step(W, b, x, y):
    return np.sum((x @ W + b - y) ** 2)


def data(seed=0):
    r = np.random.default_rng(seed)
    return [r.normal(size=(4, 3)) * 0.5, r.normal(size=3) * 0.1, r.normal(size=(8, 4)),
            r.uniform(-0.5, 0.5, size=(8, 3))]


def copies(args):
    return [a.copy() for a in args]


@pytest.mark.parametrize("make", [lambda be: sb.value_and_grad(regression, wrt=("W", "b"), backend=be),
                                  lambda be: sb.grad(regression, wrt="W", backend=be),
                                  lambda be: sb.grad(regression, backend=be)], ids=["value_and_grad", "grad", "wrt=None"])
def test_compiled_functions_round_trip(backend, make):
    f = make(backend)
    args = data()
    want = f(*args)
    g = pickle.loads(pickle.dumps(f))
    assert g.compilations == 0 and g.backend == backend and g.wrt == f.wrt and g.single == f.single
    got = g(*args)  # compiled again on the first call
    assert g.compilations == 1
    np.testing.assert_equal(got, want)
    assert g.source == f.source


def test_a_decorated_model_round_trips():
    """The module's name `decorated` is the wrapper, so the model is found behind it."""
    g = pickle.loads(pickle.dumps(decorated))
    assert g is not decorated and g.fn is decorated.fn
    np.testing.assert_equal(g(*data()), decorated(*data()))


def test_a_model_pickle_cannot_find_is_a_pickling_error():
    def local(w):
        return np.sum(w * w)

    with pytest.raises((pickle.PicklingError, AttributeError), match="local"):
        pickle.dumps(sb.grad(local))


def steps_for(backend):
    return sb.train_step(regression, sb.optim.Adam(lr=sb.optim.schedules.cosine(0.05, total=20), weight_decay=0.01,
                                                   decay="l2"),
                         wrt=("W", "b"), clip_norm=0.5, accumulate=2, backend=backend)


def test_a_train_step_round_trips_with_its_state(backend):
    step, args = steps_for(backend), data()
    for _ in range(5):  # two updates and one gradient summed towards the third
        step(*args)
    copy = pickle.loads(pickle.dumps(step))
    assert copy.steps == 2 and copy.state["accumulated"] == 1 and copy.compilations == 0
    assert (copy.clip_norm, copy.accumulate, copy.backend, copy.wrt) == (0.5, 2, backend, step.wrt)
    assert repr(copy.optimizer) == repr(step.optimizer)
    for name, value in step.state.items():
        np.testing.assert_array_equal(copy.state[name], value)
        assert copy.state[name] is not value or name == "accumulated"
    mine, theirs = copies(args), copies(args)
    for _ in range(5):
        assert step(*mine) == copy(*theirs)
    np.testing.assert_array_equal(mine[0], theirs[0])


def test_a_decorated_train_step_round_trips_with_its_state():
    args = data()
    decorated_step(*args)
    copy = pickle.loads(pickle.dumps(decorated_step))
    assert copy is not decorated_step and copy.fn is decorated_step.fn
    np.testing.assert_array_equal(copy.state["v_W"], decorated_step.state["v_W"])
    a, b = copies(args), copies(args)
    assert copy(*a) == decorated_step(*b)
    np.testing.assert_array_equal(a[0], b[0])


def run_in_worker(step, args, calls):
    """In the worker process: the losses of `calls` calls, and the parameters they leave."""
    losses = [float(step(*args)) for _ in range(calls)]
    return losses, args[:2], step.steps, step.compilations


def test_a_train_step_runs_in_a_spawned_worker():
    """Sent to a fresh interpreter (spawn: nothing inherited), each backend's step gives the same losses."""
    args = data()
    jobs, local = [], []
    for backend in ("numpy", "llvm"):
        step = steps_for(backend)
        step(*copies(args))  # state worth sending: one gradient summed
        jobs.append((pickle.loads(pickle.dumps(step)), copies(args), 5))
        here = copies(args)
        local.append(([float(step(*here)) for _ in range(5)], here[:2], step.steps))
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        results = [pool.apply(run_in_worker, job) for job in jobs]
    for (losses, params, steps, compilations), (want_losses, want_params, want_steps) in zip(results, local):
        assert losses == want_losses and steps == want_steps == 3 and compilations == 1
        for got, want in zip(params, want_params):
            np.testing.assert_array_equal(got, want)
