"""has_aux=True: the model returns (loss, aux); aux comes from the same generated forward, never differentiated."""
import ctypes
import inspect
import pickle

import numpy as np
import pytest

import symbackprop as sb
from gradcheck import assert_gradients_match


def classifier(W, b, x, y):
    logits = x @ W + b
    m = np.max(logits, axis=1, keepdims=True)
    z = logits - m
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    loss = -np.mean(np.sum(y * logp, axis=1))
    hit = np.where(logits >= m, 1.0, 0.0)                      # 1 at each row's largest logit
    accuracy = np.mean(np.sum(hit * y, axis=1))
    return loss, {"accuracy": accuracy, "logits": logits, "classes": 3}


def classifier_loss(W, b, x, y):
    logits = x @ W + b
    m = np.max(logits, axis=1, keepdims=True)
    z = logits - m
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return -np.mean(np.sum(y * logp, axis=1))


def with_extra_product(W, x, V):
    h = np.tanh(x @ W)
    probe = h @ V                                               # a product only aux reads
    return np.sum(h * h), (probe, [np.sum(probe), 2.5])


def loss_only_extra_product(W, x, V):
    h = np.tanh(x @ W)
    return np.sum(h * h)


def log_probabilities(z, y):
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))   # recognised as log_softmax
    return -np.sum(y * logp), logp


def returns_a_parameter(w, x):
    return np.sum((w * x - 1.0) ** 2), {"w": w, "positive": w * x > 0.5, "count": np.sum(w > 0)}


def scalars(w, x):
    e = (w - x) ** 2
    return e, (w * 2.0, [x, 1.5])


def not_a_pair(w, x):
    return np.sum(w * x)


def a_pair_without_has_aux(w, x):
    return np.sum(w * x), w


def a_range_in_aux(w, x):
    return np.sum(w * x), {"r": range(3)}


rng = np.random.default_rng(7)
W, B = rng.normal(size=(4, 3)), rng.normal(size=3)
X = rng.normal(size=(8, 4))
Y = np.eye(3)[rng.integers(0, 3, 8)]
V = rng.normal(size=(3, 2))
ARGS = (W, B, X, Y)


def _numpy_aux(W, b, x, y):
    logits = x @ W + b
    return np.mean(np.sum((logits >= logits.max(axis=1, keepdims=True)) * y, axis=1)), logits


# ---- values ---------------------------------------------------------------------------------

def test_value_and_grad_returns_the_value_with_aux_and_the_gradients(backend):
    f = sb.value_and_grad(classifier, wrt=(0, 1), has_aux=True, backend=backend)
    for _ in range(2):  # the first call compiles, the second takes the fast path
        (value, aux), (dW, db) = f(*ARGS)
        accuracy, logits = _numpy_aux(*ARGS)
        assert set(aux) == {"accuracy", "logits", "classes"} and aux["classes"] == 3
        assert type(aux["accuracy"]) is float and aux["accuracy"] == pytest.approx(accuracy, rel=1e-15)
        np.testing.assert_allclose(aux["logits"], logits, rtol=1e-14)
        plain_value, (pW, pb) = sb.value_and_grad(classifier_loss, wrt=(0, 1), backend=backend)(*ARGS)
        assert value == pytest.approx(plain_value, rel=1e-15)
        np.testing.assert_allclose(dW, pW, rtol=1e-14)
        np.testing.assert_allclose(db, pb, rtol=1e-14)
    assert_gradients_match(classifier_loss, (dW, db), list(ARGS), (0, 1))
    assert f.compilations == 1 and not f.specialiser.forwards   # one program: no second forward for aux


def test_grad_returns_the_gradient_and_aux(backend):
    g = sb.grad(classifier, wrt=(0, 1), has_aux=True, backend=backend)
    for _ in range(2):
        (dW, db), aux = g(*ARGS)
        np.testing.assert_allclose(db, sb.grad(classifier_loss, wrt=1)(*ARGS), rtol=1e-14)
        assert aux["accuracy"] == pytest.approx(_numpy_aux(*ARGS)[0], rel=1e-15)


def test_aux_arrays_numbers_and_nesting(backend):
    f = sb.value_and_grad(with_extra_product, has_aux=True, backend=backend)
    (value, (probe, [total, constant])), dW = f(W, X, V)
    h = np.tanh(X @ W)
    np.testing.assert_allclose(probe, h @ V, rtol=1e-14)
    assert total == pytest.approx(np.sum(h @ V), rel=1e-13) and constant == 2.5
    np.testing.assert_allclose(dW, sb.grad(loss_only_extra_product)(W, X, V), rtol=1e-14)


def test_scalar_models_return_aux_from_math_code(backend):
    f = sb.value_and_grad(scalars, has_aux=True, backend=backend)
    assert f(1.0, 0.5) == ((0.25, (2.0, [0.5, 1.5])), 1.0)
    assert f(1.0, 0.5) == ((0.25, (2.0, [0.5, 1.5])), 1.0)


def test_an_aux_value_the_softmax_patterns_would_absorb_is_kept(backend):
    z, y = rng.normal(size=(5, 4)), np.eye(4)[rng.integers(0, 4, 5)]
    (value, logp), dz = sb.value_and_grad(log_probabilities, has_aux=True, backend=backend)(z, y)
    expected = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    np.testing.assert_allclose(logp, expected, rtol=1e-14)
    assert_gradients_match(lambda z, y: log_probabilities(z, y)[0], (dz,), [z, y], (0,))


def test_parameters_booleans_and_integers_as_aux(backend):
    w, x = np.array([0.3, 0.8, -0.2]), np.array([1.0, 2.0, 3.0])
    (value, aux), d = sb.value_and_grad(returns_a_parameter, has_aux=True, backend=backend)(w, x)
    assert aux["w"] is not w and np.array_equal(aux["w"], w)
    assert aux["positive"].dtype == bool and aux["positive"].tolist() == [False, True, False]
    assert aux["count"] == 2 and type(aux["count"]) is int


# ---- no adjoint work for aux ---------------------------------------------------------------

def test_aux_adds_no_backward_work_to_the_numpy_code():
    f = sb.value_and_grad(with_extra_product, has_aux=True)
    plain = sb.value_and_grad(loss_only_extra_product)
    f(W, X, V)
    plain(W, X, V)
    def backward(source):  # the statements, without their line comments
        return [line.split("#")[0].rstrip() for line in source.split("# backward")[1].split("return")[0].splitlines()]
    assert backward(f.source) == backward(plain.source) and len(backward(f.source)) > 3
    assert f.source.count("np.dot(") == plain.source.count("np.dot(") + 1    # the one product only aux reads


def test_aux_adds_no_backward_work_to_the_llvm_code():
    f = sb.value_and_grad(with_extra_product, has_aux=True, backend="llvm")
    plain = sb.value_and_grad(loss_only_extra_product, backend="llvm")
    f(W, X, V)
    plain(W, X, V)
    def operations(source):  # the IR's header lists each operation: `;   file:line   out = what`
        return [line.split(None, 2)[2] for line in source.splitlines() if line.startswith(";   ")]
    ours, theirs = operations(f.source), operations(plain.source)
    assert [op for op in ours if not op.startswith(("probe =", "_ = sum"))] == theirs
    assert len(ours) == len(theirs) + 2 and ours.count("probe = matmul") == 1


# ---- train_step ---------------------------------------------------------------------------

@pytest.mark.parametrize("accumulate", [1, 2])
def test_train_step_returns_the_loss_and_aux(backend, accumulate):
    w0, x = np.array([0.3, 0.8, -0.2]), np.array([1.0, 2.0, 3.0])
    w, plain_w = w0.copy(), w0.copy()
    step = sb.train_step(returns_a_parameter, sb.optim.SGD(lr=0.05), has_aux=True, backend=backend,
                         accumulate=accumulate)
    plain = sb.train_step(lambda_free(returns_a_parameter), sb.optim.SGD(lr=0.05), backend=backend,
                          accumulate=accumulate)
    for _ in range(3):
        before = w.copy()
        loss, aux = step(w, x)
        assert loss == pytest.approx(plain(plain_w, x), rel=1e-14)
        np.testing.assert_array_equal(aux["w"], before)                   # aux is the value before the update
        np.testing.assert_allclose(w, plain_w, rtol=1e-14)
    assert "has_aux=True" in repr(step)


def lambda_free(f):
    return loss_of_returns_a_parameter


def loss_of_returns_a_parameter(w, x):
    return np.sum((w * x - 1.0) ** 2)


# ---- export, explain, check_grad, pickle ------------------------------------------------------

def test_exported_module_returns_aux(tmp_path):
    f = sb.value_and_grad(classifier, wrt=(0, 1), has_aux=True)
    path = f.export(tmp_path / "grad.py", *ARGS)
    namespace = {}
    exec(open(path).read(), namespace)
    (value, aux), (dW, db) = namespace["value_and_grad"](*ARGS)
    (v2, aux2), (dW2, db2) = f(*ARGS)
    assert value == v2 and aux["accuracy"] == aux2["accuracy"] and aux["classes"] == 3
    np.testing.assert_array_equal(aux["logits"], aux2["logits"])
    loss, aux3 = namespace["forward"](*ARGS)
    assert loss == pytest.approx(value, rel=1e-15) and aux3["accuracy"] == aux["accuracy"]
    assert f.forward(*ARGS)[1]["accuracy"] == aux["accuracy"]


def test_shared_library_writes_aux_after_the_gradients(tmp_path):
    f = sb.value_and_grad(classifier, wrt=(0, 1), has_aux=True, backend="llvm")
    lib = f.export(tmp_path / "libclassifier.so", *ARGS)
    header = (tmp_path / "libclassifier.h").read_text()
    assert "double* d_b,  /* gradient of b" in header
    assert "double* aux_accuracy,  /* aux, not differentiated: scalar */" in header
    assert "double* aux_logits  /* aux, not differentiated: [8][3], C order */" in header
    so = ctypes.CDLL(str(lib))
    outs = [np.empty(()), np.empty((4, 3)), np.empty(3), np.empty(()), np.empty((8, 3))]
    inputs = [np.ascontiguousarray(a) for a in ARGS]
    assert so.classifier_value_and_grad(*[a.ctypes.data_as(ctypes.c_void_p) for a in inputs + outs]) == 0
    (value, aux), (dW, db) = f(*ARGS)
    assert float(outs[0]) == pytest.approx(value, rel=1e-14) and float(outs[3]) == aux["accuracy"]
    np.testing.assert_allclose(outs[4], aux["logits"], rtol=1e-14)
    np.testing.assert_allclose(outs[2], db, rtol=1e-13)


def test_explain_and_check_grad_take_has_aux(backend):
    f = sb.value_and_grad(classifier, wrt=(0, 1), has_aux=True, backend=backend)
    assert "d_W" in f.explain(*ARGS)
    assert sb.check_grad(f, *ARGS)
    assert sb.check_grad(classifier, *ARGS, wrt="b", has_aux=True, backend=backend)


def test_pickled_function_keeps_has_aux():
    f = pickle.loads(pickle.dumps(sb.grad(classifier, wrt="b", has_aux=True)))
    db, aux = f(*ARGS)
    assert f.has_aux and aux["classes"] == 3 and db.shape == (3,)


# ---- errors -------------------------------------------------------------------------------

def _return_line(fn):
    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, l in enumerate(lines) if "return" in l)


def test_a_model_not_returning_a_pair_is_rejected_at_its_return():
    with pytest.raises(sb.CompileError) as e:
        sb.value_and_grad(not_a_pair, has_aux=True)(np.ones(3), np.ones(3))
    assert e.value.loc.line == _return_line(not_a_pair)
    assert "with has_aux=True the model returns (loss, aux)" in str(e.value) and "return loss, aux" in str(e.value)


def test_a_tuple_without_has_aux_names_it():
    with pytest.raises(sb.CompileError) as e:
        sb.grad(a_pair_without_has_aux)(np.ones(3), np.ones(3))
    assert e.value.loc.line == _return_line(a_pair_without_has_aux)
    assert "has_aux=True" in str(e.value)


def test_aux_holds_arrays_and_numbers_only():
    with pytest.raises(sb.CompileError, match=r"aux\['r'\] is a range; aux holds arrays and numbers"):
        sb.grad(a_range_in_aux, has_aux=True)(np.ones(3), np.ones(3))
    with pytest.raises(TypeError, match="has_aux is True or False"):
        sb.grad(classifier, has_aux="yes")


def test_exported_train_step_library_writes_aux_after_the_loss(tmp_path):
    step = sb.train_step(with_extra_product, sb.optim.SGD(lr=0.1), has_aux=True, backend="llvm")
    step.export(tmp_path / "libstep.so", W.copy(), X, V)
    header = (tmp_path / "libstep.h").read_text()
    assert header.index("double* loss") < header.index("double* aux_0,") < header.index("double* aux_1_0")
    namespace = {}
    exec(open(sb.train_step(with_extra_product, sb.optim.SGD(lr=0.1), has_aux=True).export(
        tmp_path / "step.py", W.copy(), X, V)).read(), namespace)
    mine = W.copy()
    loss, (probe, [total, constant]) = namespace["train_step"](mine, X, V, namespace["init_state"](mine))
    np.testing.assert_allclose(probe, np.tanh(X @ W) @ V, rtol=1e-14)
    assert constant == 2.5 and not np.array_equal(mine, W)
