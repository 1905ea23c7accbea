"""An exported `.py` module is one specialisation: its functions refuse every other argument.

Each public function (forward, value_and_grad; init_state, train_step) checks every argument
against the specialisation it was compiled for and raises TypeError or ValueError naming the
argument, what it got and what the module was compiled for; the model's literal defaults stay
in the signatures. The docs' last-batch recipes (docs/export.md) are tested here too.
"""
import importlib.util
import inspect

import numpy as np
import pytest

import symbackprop as sb
import models


def mean_squared(w, x, y):
    return np.mean((x @ w - y) ** 2)


def masked_mean_squared(w, x, y, mask):
    r = x @ w - y
    return np.sum(mask * r * r) / np.sum(mask)


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _batch(n, rng=None):
    rng = rng or np.random.default_rng(n)
    return rng.normal(size=3), rng.normal(size=(n, 3)), rng.normal(size=n)


@pytest.fixture
def grad_module(tmp_path):
    f = sb.value_and_grad(mean_squared)
    f.export(tmp_path / "msq.py", *_batch(10))
    return _load(tmp_path / "msq.py")


@pytest.fixture
def step_module(tmp_path):
    step = sb.train_step(models.float_scale_in_array_model, sb.optim.Adam(lr=0.01), wrt="w")
    step.export(tmp_path / "step.py", np.ones(3), np.ones(3), 2.0, 3)
    return _load(tmp_path / "step.py")


def test_a_batch_of_20_into_a_module_for_10_raises(grad_module):
    w, x, y = _batch(20)
    message = r"x has shape \(20, 3\); this module was compiled for shape \(10, 3\): export one module per shape"
    with pytest.raises(ValueError, match=message):
        grad_module.value_and_grad(w, x, y)
    with pytest.raises(ValueError, match=message):
        grad_module.forward(w, x, y)
    w, x, y = _batch(10)
    value, grad = grad_module.value_and_grad(w, x, y)
    want_value, want_grad = sb.value_and_grad(mean_squared)(w, x, y)
    assert value == pytest.approx(want_value, rel=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12)


@pytest.mark.parametrize("position,bad,error,message", [
    (0, np.ones(4), ValueError, r"w has shape \(4,\); this module was compiled for shape \(3,\)"),
    (1, np.ones((10, 3, 1)), ValueError, r"x has 3 dimensions \(shape \(10, 3, 1\)\); this module was compiled "
                                         r"for shape \(10, 3\)"),
    (2, np.ones((10, 1)), ValueError, r"y has 2 dimensions"),
    (1, np.ones((10, 3), np.float32), TypeError, r"x has dtype float32; this module was compiled for float64: "
                                                 r"pass x.astype\(np.float64\)"),
    (0, np.ones(3, np.int64), TypeError, r"w has dtype int64"),
    (0, [1.0, 2.0, 3.0], TypeError, r"w is \[1.0, 2.0, 3.0\] \(list\); this module was compiled for a float64 "
                                    r"array of shape \(3,\): pass np.asarray\(w, dtype=np.float64\)"),
    (0, 1.0, TypeError, r"w is 1.0 \(float\); this module was compiled for a float64 array"),
    (2, None, TypeError, r"y is None \(NoneType\)"),
    (0, np.float64(1.0), ValueError, r"w has 0 dimensions"),
])
def test_wrong_arrays_are_refused_naming_the_argument(grad_module, position, bad, error, message):
    args = list(_batch(10))
    args[position] = bad
    for function in (grad_module.forward, grad_module.value_and_grad):
        with pytest.raises(error, match=message):
            function(*args)


def test_layouts_of_the_right_shape_and_dtype_are_accepted(grad_module):
    w, x, y = _batch(10)
    want = grad_module.value_and_grad(w, x, y)[0]
    x_f = np.asfortranarray(x)
    y_strided = np.repeat(y, 2)[::-2][::-1]  # a strided view of the same numbers
    np.testing.assert_array_equal(y_strided, y)
    assert grad_module.value_and_grad(w, x_f, y_strided)[0] == pytest.approx(want, rel=1e-12)
    w.flags.writeable = False
    assert grad_module.value_and_grad(w, x, y)[0] == pytest.approx(want, rel=1e-12)


def test_a_zero_d_parameter_takes_a_numpy_scalar_or_a_zero_d_array(tmp_path):
    def scale(a, x):
        return np.sum(a * x)
    f = sb.value_and_grad(scale)
    f.export(tmp_path / "zero.py", np.array(2.0), np.ones(3))
    module = _load(tmp_path / "zero.py")
    assert module.value_and_grad(np.array(2.0), np.ones(3))[0] == 6.0
    assert module.value_and_grad(np.float64(2.0), np.ones(3))[0] == 6.0
    with pytest.raises(TypeError, match=r"a is 2.0 \(float\); this module was compiled for a float64 array of shape \(\)"):
        module.value_and_grad(2.0, np.ones(3))


def test_floats_are_checked_by_type(tmp_path):
    f = sb.value_and_grad(models.line, wrt="w")
    f.export(tmp_path / "line.py", 0.5, -1.0, 2.0, 3.0)
    module = _load(tmp_path / "line.py")
    want = f(0.5, -1.0, 2.0, 3.0)
    assert module.value_and_grad(0.5, -1.0, 2.0, 3.0) == pytest.approx(want, rel=1e-12)
    assert module.value_and_grad(0.5, -1, 2, np.float32(3.0)) == pytest.approx(want, rel=1e-12)  # numbers convert
    for bad in ("2", None, True, np.ones(1), np.array(2.0)):
        with pytest.raises(TypeError, match=r"x is .*; this module was compiled for a Python float: pass float\(x\)"):
            module.value_and_grad(0.5, -1.0, bad, 3.0)
        with pytest.raises(TypeError, match=r"x is .*; this module was compiled for a Python float"):
            module.forward(0.5, -1.0, bad, 3.0)


def test_steering_values_are_checked_by_value_and_type(tmp_path):
    r = np.random.default_rng(0)
    args = [r.normal(size=(3, 2)), r.normal(size=2), r.normal(size=(4, 3)), r.normal(size=(4, 2)), 3]
    f = sb.value_and_grad(models.loop_with_helpers, wrt=("W", "b"))
    f.export(tmp_path / "loop.py", *args)
    module = _load(tmp_path / "loop.py")
    assert module.value_and_grad(*args)[0] == pytest.approx(f(*args)[0], rel=1e-12)
    with pytest.raises(ValueError, match=r"n is 4 \(int\); this module was compiled for n=3 \(int\): export one "
                                         r"module per value of n"):
        module.value_and_grad(*args[:4], 4)
    with pytest.raises(TypeError, match=r"n is 3.0 \(float\); this module was compiled for n=3 \(int\)"):
        module.forward(*args[:4], 3.0)
    with pytest.raises(TypeError, match=r"n is np.int64\(3\)|n is 3 \(int64\)"):
        module.forward(*args[:4], np.int64(3))


def test_bool_and_int_steering_values_are_told_apart(tmp_path):
    def flagged(x, flag):
        return np.sum(x * x) if flag else np.sum(x)
    f = sb.grad(flagged)
    f.export(tmp_path / "flag.py", np.ones(2), True)
    module = _load(tmp_path / "flag.py")
    np.testing.assert_array_equal(module.value_and_grad(np.ones(2), True)[1], [2.0, 2.0])
    with pytest.raises(TypeError, match=r"flag is 1 \(int\); this module was compiled for flag=True \(bool\)"):
        module.value_and_grad(np.ones(2), 1)
    with pytest.raises(ValueError, match=r"flag is False \(bool\)"):
        module.value_and_grad(np.ones(2), False)


def test_the_models_defaults_are_kept(tmp_path):
    args = [np.full(3, 0.3), np.full(3, 0.7), 2.0, 3]
    f = sb.value_and_grad(models.float_scale_in_array_model, wrt="w")
    f.export(tmp_path / "defaults.py", *args)
    module = _load(tmp_path / "defaults.py")
    for function in (module.forward, module.value_and_grad):
        parameters = inspect.signature(function).parameters
        assert [(p.name, p.default) for p in parameters.values()] == [
            ("w", inspect.Parameter.empty), ("x", inspect.Parameter.empty), ("scale", 2.0), ("n", 3)]
    value, grad = module.value_and_grad(args[0], args[1])
    want_value, want_grad = f(*args)
    assert value == pytest.approx(want_value, rel=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12)
    assert module.forward(args[0], args[1], scale=4.0) == pytest.approx(2 * want_value, rel=1e-12)


def test_an_array_default_is_left_out_with_the_defaults_before_it(tmp_path):
    def weighted(x, scale=2.0, w=np.ones(3)):
        return scale * np.sum(w * x * x)
    f = sb.value_and_grad(weighted)
    f.export(tmp_path / "weighted.py", np.ones(3), 2.0, np.ones(3))
    module = _load(tmp_path / "weighted.py")
    assert list(inspect.signature(module.value_and_grad).parameters) == ["x", "scale", "w"]
    assert all(p.default is inspect.Parameter.empty
               for p in inspect.signature(module.value_and_grad).parameters.values())
    assert module.value_and_grad(np.ones(3), 2.0, np.ones(3))[0] == 6.0


# ---- train steps -------------------------------------------------------------------

def test_train_step_checks_arguments_state_and_hyperparameters(step_module):
    w, x = np.full(3, 0.5), np.ones(3)
    with pytest.raises(ValueError, match=r"w has shape \(4,\); this module was compiled for shape \(3,\)"):
        step_module.init_state(np.ones(4))
    state = step_module.init_state(w)
    with pytest.raises(ValueError, match=r"x has shape \(6,\); this module was compiled for shape \(3,\)"):
        step_module.train_step(w, np.ones(6), 2.0, 3, state)
    with pytest.raises(TypeError, match=r"x has dtype float32"):
        step_module.train_step(w, x.astype(np.float32), 2.0, 3, state)
    with pytest.raises(TypeError, match=r"x is \[1, 2, 3\] \(list\)"):
        step_module.train_step(w, [1, 2, 3], 2.0, 3, state)
    with pytest.raises(ValueError, match=r"n is 2 \(int\); this module was compiled for n=3"):
        step_module.train_step(w, x, 2.0, 2, state)
    with pytest.raises(TypeError, match=r"state is None \(NoneType\); pass the dict init_state"):
        step_module.train_step(w, x)
    with pytest.raises(ValueError, match=r"state has no m_w, t, v_w"):
        step_module.train_step(w, x, state={})
    with pytest.raises(ValueError, match=r'state\["v_w"\] has shape \(2,\)'):
        step_module.train_step(w, x, state=dict(state, v_w=np.zeros(2)))
    with pytest.raises(TypeError, match=r"lr is 'fast' \(str\); this module was compiled for a Python float"):
        step_module.train_step(w, x, state=state, lr="fast")
    with pytest.raises(ValueError, match=r"x has shape \(6,\)"):
        step_module.forward(w, np.ones(6))
    np.testing.assert_array_equal(w, np.full(3, 0.5))  # nothing refused ran a step
    assert state["t"] == 0


def test_train_step_keeps_the_models_defaults_and_matches_the_library(step_module):
    parameters = inspect.signature(step_module.train_step).parameters
    assert [(p.name, p.default) for p in parameters.values()][:5] == [
        ("w", inspect.Parameter.empty), ("x", inspect.Parameter.empty), ("scale", 2.0), ("n", 3), ("state", None)]
    assert parameters["lr"].default == 0.01
    w, x = np.full(3, 0.5), np.full(3, 0.8)
    w_lib = w.copy()
    library = sb.train_step(models.float_scale_in_array_model, sb.optim.Adam(lr=0.01), wrt="w")
    state = step_module.init_state(w)
    for _ in range(3):
        loss = step_module.train_step(w, x, state=state)
        assert loss == pytest.approx(library(w_lib, x, 2.0, 3), rel=1e-12)
    np.testing.assert_allclose(w, w_lib, rtol=1e-12)
    assert step_module.forward(w, x) == pytest.approx(sb.value_and_grad(models.float_scale_in_array_model)(
        w_lib, x, 2.0, 3)[0], rel=1e-12)


def test_accumulating_train_step_checks_too(tmp_path):
    step = sb.train_step(mean_squared, sb.optim.SGD(lr=0.1), wrt="w", accumulate=2)
    step.export(tmp_path / "acc.py", *_batch(10))
    module = _load(tmp_path / "acc.py")
    w, x, y = _batch(10)
    state = module.init_state(w)
    with pytest.raises(ValueError, match=r"x has shape \(20, 3\)"):
        module.train_step(w, *_batch(20)[1:], state)
    assert state["accumulated"] == 0
    module.train_step(w, x, y, state)
    assert state["accumulated"] == 1
    with pytest.raises(ValueError, match=r"state has no accumulated"):
        module.train_step(w, x, y, {k: v for k, v in state.items() if k != "accumulated"})


# ---- the recipes docs/export.md gives for a smaller last batch ------------------------

def test_one_export_per_batch_size(tmp_path):
    f = sb.value_and_grad(mean_squared)
    for n in (10, 7):
        f.export(tmp_path / f"msq_{n}.py", *_batch(n))
    modules = {n: _load(tmp_path / f"msq_{n}.py") for n in (10, 7)}
    for n in (10, 7):
        value, grad = modules[n].value_and_grad(*_batch(n))
        want_value, want_grad = f(*_batch(n))
        assert value == pytest.approx(want_value, rel=1e-12)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-12)


def test_padding_the_last_batch_with_a_mask_gives_its_own_loss_and_gradient(tmp_path):
    batch = 10
    f = sb.value_and_grad(masked_mean_squared, wrt="w")
    w, x, y = _batch(batch)
    f.export(tmp_path / "masked.py", w, x, y, np.ones(batch))
    module = _load(tmp_path / "masked.py")
    w, x_last, y_last = _batch(7)  # the last batch of an epoch: 7 rows
    pad = batch - len(y_last)
    x_pad = np.concatenate([x_last, np.zeros((pad, 3))])
    y_pad = np.concatenate([y_last, np.zeros(pad)])
    mask = np.concatenate([np.ones(len(y_last)), np.zeros(pad)])
    value, grad = module.value_and_grad(w, x_pad, y_pad, mask)
    want_value, want_grad = sb.value_and_grad(mean_squared)(w, x_last, y_last)  # the 7 rows alone
    assert value == pytest.approx(want_value, rel=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match=r"x has shape \(7, 3\); this module was compiled for shape \(10, 3\)"):
        module.value_and_grad(w, x_last, y_last, np.ones(7))
