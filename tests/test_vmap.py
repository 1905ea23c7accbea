"""Batching (sb.vmap, sb.per_example_grad): one program for the whole batch, equal to a loop of single-example
calls (float64, both backends), per-example gradients against central differences, and the errors."""
import numpy as np
import pytest

import symbackprop as sb
import models
from gradcheck import numerical_gradient
from test_gradients import CASES

TIGHT = dict(rtol=1e-12, atol=1e-12)


def _mlp(W1, b1, W2, b2, X, y):
    """W4's MLP (benchmarks/workloads.py), written for a batch."""
    h = np.tanh(X @ W1 + b1)
    z = h @ W2 + b2
    m = np.max(z, axis=1, keepdims=True)
    lse = m + np.log(np.sum(np.exp(z - m), axis=1, keepdims=True))
    return -np.mean(np.sum(y * (z - lse), axis=1))


def _mlp_args(batch=6, n_in=7, n_hidden=5, n_out=3, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n_in, n_hidden)) / 3, 0.1 * rng.normal(size=n_hidden),
            rng.normal(size=(n_hidden, n_out)) / 2, 0.1 * rng.normal(size=n_out),
            rng.random((batch, n_in)), np.eye(n_out)[rng.integers(0, n_out, batch)])


WRT = ("W1", "b1", "W2", "b2")


def _stacked_single_example_grads(model, args, wrt, data, n, backend="numpy"):
    g = sb.grad(model, wrt=wrt, backend=backend)
    rows = []
    for i in range(n):
        call = [a[i:i + 1] if k in data else a for k, a in enumerate(args)]
        rows.append(g(*call))
    return [np.stack([row[k] for row in rows]) for k in range(len(wrt))]


def test_per_example_grad_of_the_mlp_is_the_stack_of_single_example_grads(backend):
    args = _mlp_args()
    grads = sb.per_example_grad(_mlp, wrt=WRT, backend=backend)(*args)
    loop = _stacked_single_example_grads(_mlp, args, WRT, {4, 5}, 6, backend)
    for g, ref, p in zip(grads, loop, args):
        assert g.shape == (6,) + p.shape and g.dtype == np.float64
        np.testing.assert_allclose(g, ref, **TIGHT)


def test_per_example_grads_against_finite_differences(backend):
    args = _mlp_args(batch=3)
    grads = sb.per_example_grad(_mlp, wrt=WRT, backend=backend)(*args)
    for i in range(3):
        call = list(args[:4]) + [args[4][i:i + 1], args[5][i:i + 1]]
        for k in range(4):
            fd, probe = numerical_gradient(_mlp, call, k)
            np.testing.assert_allclose(grads[k][i].reshape(-1)[probe], fd.reshape(-1)[probe], rtol=1e-5, atol=1e-7)


def test_the_batched_program_has_matrix_products_and_no_loop():
    args = _mlp_args(batch=16)
    f = sb.per_example_grad(_mlp, wrt=WRT)
    f(*args)
    src = f.source
    assert "\n        for " not in src and "range(" not in src
    # the forward products take the whole batch (batch x inputs) @ W, the backward one d_z @ W2.T: no n products
    assert src.count("np.dot(") == 3, src
    assert "reshape(16, 7), W1)" in src


def test_per_example_grad_of_integer_labels_and_a_tree(backend):
    def loss(params, x, labels):
        (W, b), = params["layers"]
        z = x @ W + b
        m = np.max(z, axis=1, keepdims=True)
        logp = z - m - np.log(np.sum(np.exp(z - m), axis=1, keepdims=True))
        return -np.mean(logp[np.arange(x.shape[0]), labels])

    rng = np.random.default_rng(3)
    params = {"layers": [(rng.normal(size=(4, 3)), rng.normal(size=3))]}
    x, labels = rng.normal(size=(5, 4)), rng.integers(0, 3, 5)
    grads = sb.per_example_grad(loss, wrt="params", backend=backend)(params, x, labels)
    (dW, db), = grads["layers"]
    g = sb.grad(loss, wrt="params")
    for i in range(5):
        (rW, rb), = g(params, x[i:i + 1], labels[i:i + 1])["layers"]
        np.testing.assert_allclose(dW[i], rW, **TIGHT)
        np.testing.assert_allclose(db[i], rb, **TIGHT)


def test_batch_axis_one():
    args = _mlp_args(batch=4)
    moved = args[:4] + (args[4].T.copy(), args[5].T.copy())

    def transposed(W1, b1, W2, b2, XT, yT):
        return _mlp(W1, b1, W2, b2, XT.T, yT.T)

    grads = sb.per_example_grad(transposed, wrt=WRT, batch_axis=1)(*moved)
    ref = sb.per_example_grad(_mlp, wrt=WRT)(*args)
    for g, r in zip(grads, ref):
        np.testing.assert_allclose(g, r, **TIGHT)


def per_example_loss(w, b, x, y):
    """One example: x a vector, y a number."""
    return (np.tanh(x @ w + b) - y) ** 2


def test_vmap_of_a_model_and_of_its_gradient(backend):
    rng = np.random.default_rng(1)
    w, b, X, Y = rng.normal(size=4), 0.3, rng.normal(size=(7, 4)), rng.normal(size=7)
    losses = sb.vmap(per_example_loss, in_axes=(None, None, 0, 0), backend=backend)(w, b, X, Y)
    np.testing.assert_allclose(losses, [per_example_loss(w, b, X[i], Y[i]) for i in range(7)], **TIGHT)
    dw, db = sb.vmap(sb.grad(per_example_loss, wrt=(0, 1), backend=backend), in_axes=(None, None, 0, 0))(w, b, X, Y)
    value, (dw2, db2) = sb.vmap(sb.value_and_grad(per_example_loss, wrt=(0, 1)), in_axes=(None, None, 0, 0),
                                backend=backend)(w, b, X, Y)
    g = sb.grad(per_example_loss, wrt=(0, 1))
    for i in range(7):
        rw, rb = g(w, b, X[i], Y[i])
        np.testing.assert_allclose(dw[i], rw, **TIGHT)
        np.testing.assert_allclose(db[i], rb, **TIGHT)
    np.testing.assert_allclose(dw2, dw, **TIGHT)
    np.testing.assert_allclose(value, losses, **TIGHT)
    assert dw.shape == (7, 4) and db.shape == (7,)


def test_vmap_in_axes_and_array_results(backend):
    def f(A, x):
        return np.tanh(A @ x) * 2.0

    rng = np.random.default_rng(2)
    A, xs = rng.normal(size=(3, 4)), rng.normal(size=(4, 5))  # examples along axis 1 of xs
    out = sb.vmap(f, in_axes=(None, 1), backend=backend)(A, xs)
    np.testing.assert_allclose(out, np.stack([f(A, xs[:, i]) for i in range(5)]), **TIGHT)
    As = rng.normal(size=(5, 3, 4))
    out = sb.vmap(f, backend=backend)(As, xs.T.copy())  # in_axes=0: every array mapped along axis 0
    np.testing.assert_allclose(out, np.stack([f(As[i], xs[:, i]) for i in range(5)]), **TIGHT)


def test_a_result_that_does_not_depend_on_the_batch_is_repeated():
    def f(w, x):
        return np.sum(w ** 2)

    out = sb.vmap(f, in_axes=(None, 0))(np.ones(3), np.zeros((4, 2)))
    np.testing.assert_array_equal(out, [3.0] * 4)
    out[0] = 1.0  # an array of its own, not a read-only broadcast view


# every first-tier gradient model, each array argument stacked three times along a new axis: the batched
# value and gradients against a loop (every primitive's batching rule with all, and with some, inputs batched)
SWEEP = sorted(name for name, (_, make, _) in CASES.items() if any(isinstance(a, np.ndarray) for a in make()))


def _stacked(args, which, n=3):
    rng = np.random.default_rng(9)
    return [np.stack([a + 0.1 * k * rng.uniform(-1, 1, a.shape) if a.dtype.kind == "f" else a for k in range(n)])
            if k_ in which else a for k_, a in enumerate(args)]


@pytest.mark.parametrize("name", SWEEP)
@pytest.mark.parametrize("mapped", ["all", "first"])
def test_vmap_of_value_and_grad_over_the_gradient_models(name, mapped, backend):
    model, make_args, wrt = CASES[name]
    args = make_args()
    arrays = [k for k, a in enumerate(args) if isinstance(a, np.ndarray)]
    which = set(arrays) if mapped == "all" else {arrays[0]}
    batched = _stacked(args, which)
    in_axes = tuple(0 if k in which else None for k in range(len(args)))
    value, grads = sb.vmap(sb.value_and_grad(model, wrt=wrt, backend=backend), in_axes=in_axes)(*batched)
    vg = sb.value_and_grad(model, wrt=wrt)
    for i in range(3):
        ref_value, ref_grads = vg(*[a[i] if k in which else a for k, a in enumerate(batched)])
        np.testing.assert_allclose(value[i], ref_value, **TIGHT)
        for g, r in zip(grads, ref_grads):
            np.testing.assert_allclose(g[i], r, rtol=1e-11, atol=1e-12)


def test_a_primitive_without_a_batching_rule_is_a_compile_error():
    def solved(A, b):
        x = np.linalg.solve(A, b)
        return np.sum(x ** 2)

    f = sb.vmap(solved, in_axes=(0, None))
    with pytest.raises(sb.CompileError) as err:
        f(np.stack([np.eye(2)] * 3), np.ones(2))
    message = str(err.value)
    assert "`solve` has no batching rule" in message and "test_vmap.py" in message
    assert "x = np.linalg.solve(A, b)" in message or str(solved.__code__.co_firstlineno + 1) in message


def test_call_errors():
    f = sb.vmap(per_example_loss, in_axes=(None, None, 0, 0))
    with pytest.raises(ValueError, match="different batch sizes"):
        f(np.ones(4), 0.1, np.ones((3, 4)), np.ones(2))
    with pytest.raises(ValueError, match="in_axes maps `b` over axis 0, but it is a number"):
        sb.vmap(per_example_loss, in_axes=(None, 0, 0, 0))(np.ones(4), 0.1, np.ones((3, 4)), np.ones(3))
    with pytest.raises(ValueError, match="one entry"):
        sb.vmap(per_example_loss, in_axes=(None, 0))
    with pytest.raises(TypeError, match="batch_axis is an int"):
        sb.per_example_grad(_mlp, batch_axis=(0,))
    with pytest.raises(ValueError, match="no argument has an axis to map over"):
        sb.per_example_grad(models.unary_all)(np.ones((2, 2)))
    with pytest.raises(TypeError, match="sb.vmap takes a model"):
        sb.vmap(sb.jvp(per_example_loss))


batched_loss = sb.vmap(per_example_loss, in_axes=(None, None, 0, 0))


def mean_of_batched(w, b, X, Y):
    return np.mean(batched_loss(w, b, X, Y))


def mean_written_for_the_batch(w, b, X, Y):
    return np.mean((np.tanh(X @ w + b) - Y) ** 2)


def batched_only(w, b, X, Y):
    return batched_loss(w, b, X, Y) * 1.0


def test_a_model_calling_a_vmap_function_is_differentiated_through_it(backend):
    rng = np.random.default_rng(4)
    w, b, X, Y = rng.normal(size=4), 0.3, rng.normal(size=(7, 4)), rng.normal(size=7)
    value, (dw, db) = sb.value_and_grad(mean_of_batched, wrt=(0, 1), backend=backend)(w, b, X, Y)
    ref_value, (rw, rb) = sb.value_and_grad(mean_written_for_the_batch, wrt=(0, 1))(w, b, X, Y)
    np.testing.assert_allclose(value, ref_value, **TIGHT)
    np.testing.assert_allclose(dw, rw, **TIGHT)
    np.testing.assert_allclose(db, rb, **TIGHT)
    # the same program as the model written for the batch: one product forward, one backward
    f = sb.grad(mean_of_batched, wrt=(0, 1))
    f(w, b, X, Y)
    assert f.source.count("np.dot(") == 2
    jac = sb.jacobian(batched_only, wrt=0, backend=backend)(w, b, X, Y)
    h = 1e-6
    fd = np.stack([(batched_only(w + h * e, b, X, Y) - batched_only(w - h * e, b, X, Y)) / (2 * h)
                   for e in np.eye(4)], axis=1)
    np.testing.assert_allclose(jac, fd, rtol=1e-6, atol=1e-8)


per_example = sb.per_example_grad(_mlp, wrt=WRT)


def calls_per_example(W1, b1, W2, b2, X, y):
    return np.sum(per_example(W1, b1, W2, b2, X, y)[0])


def test_a_model_cannot_call_a_per_example_grad_function():
    with pytest.raises(sb.CompileError, match="`per_example` is a per-example gradient function"):
        sb.grad(calls_per_example)(*_mlp_args())


def test_float32_stays_float32_and_batched_functions_pickle():
    import pickle
    args = [a.astype(np.float32) for a in _mlp_args()]
    grads = sb.per_example_grad(_mlp, wrt=WRT)(*args)
    assert all(g.dtype == np.float32 for g in grads)
    again = pickle.loads(pickle.dumps(per_example))
    for g, r in zip(again(*_mlp_args()), per_example(*_mlp_args())):
        np.testing.assert_array_equal(g, r)
    assert pickle.loads(pickle.dumps(batched_loss)).in_axes == (None, None, 0, 0)
