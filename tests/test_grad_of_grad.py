"""Derivatives of derivatives: a model calling an sb.grad (value_and_grad, jvp, hvp) function is one
program, differentiated again; grad-of-grad through every first-tier model (so through every adjoint
rule that model's backward pass uses), against central differences, on both backends."""
import importlib
import sys

import numpy as np
import pytest

import symbackprop as sb
from gradcheck import assert_gradients_match
from test_gradients import CASES

TEMPLATE = """import numpy as np
import symbackprop as sb
import models

inner = sb.grad(models.{model}, wrt={wrt!r})


def outer({params}):
    gs = inner({params})
    return {total}
"""


def _outer_module(tmp_path, name, model, args, wrt):
    params = ", ".join(f"a{i}" for i in range(len(args)))
    total = " + ".join(f"np.sum(gs[{k}] ** 2) * {k + 1}" for k in range(len(wrt)))
    path = tmp_path / f"gg_{name}.py"
    path.write_text(TEMPLATE.format(model=model.__name__, wrt=tuple(wrt), params=params, total=total))
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module(f"gg_{name}")
    finally:
        sys.path.remove(str(tmp_path))


@pytest.mark.parametrize("name", sorted(CASES))
def test_grad_of_grad_matches_finite_differences(name, backend, tmp_path):
    model, make_args, wrt = CASES[name]
    args = make_args()
    module = _outer_module(tmp_path, name, model, args, wrt)
    grad = sb.grad(model, wrt=wrt)

    def penalty(*a):
        gs = grad(*a)
        return sum(np.sum(np.asarray(g) ** 2) * (k + 1) for k, g in enumerate(gs))

    value, grads = sb.value_and_grad(module.outer, wrt=wrt, backend=backend)(*args)
    np.testing.assert_allclose(value, penalty(*args), rtol=1e-10, atol=1e-12)
    assert_gradients_match(penalty, grads, args, wrt, rtol=1e-4, atol=1e-6)


def energy(x, W):
    return np.sum(np.tanh(W @ x) ** 2) + np.sum(x ** 4) / 4


d_energy = sb.grad(energy, wrt=(0, 1))
vg_energy = sb.value_and_grad(energy)
jvp_energy = sb.jvp(energy)
hvp_energy = sb.hvp(energy)


def gradient_penalty(x, W):
    gx, gW = d_energy(x, W)
    return np.sum(gx ** 2) + np.sum(gW * W)


def value_and_grad_inside(x, W):
    value, gx = vg_energy(x, W)
    return value * np.sum(gx)


def jvp_inside(x, W, t):
    value, tangent = jvp_energy(x, W, tangents=t)
    return value + tangent ** 2


def hvp_inside(x, W, v):
    return np.sum(hvp_energy(x, W, v=v) * v)


@pytest.mark.parametrize("model", [gradient_penalty, value_and_grad_inside])
def test_gradient_calls_inside_a_model(model, backend):
    rng = np.random.default_rng(3)
    args = [rng.normal(size=4), rng.normal(size=(3, 4))]
    value, grads = sb.value_and_grad(model, wrt=(0, 1), backend=backend)(*args)
    np.testing.assert_allclose(value, model(*args), rtol=1e-12)
    assert_gradients_match(model, grads, args, (0, 1), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("model", [jvp_inside, hvp_inside])
def test_forward_calls_inside_a_model(model, backend):
    rng = np.random.default_rng(4)
    args = [rng.normal(size=4), rng.normal(size=(3, 4)), rng.normal(size=4)]
    value, grads = sb.value_and_grad(model, wrt=(0, 1, 2), backend=backend)(*args)
    np.testing.assert_allclose(value, model(*args), rtol=1e-10)
    assert_gradients_match(model, grads, args, (0, 1, 2), rtol=1e-4, atol=1e-6)


def test_hessian_of_a_model_calling_grad(backend):
    # third derivatives: the Hessian of a gradient penalty
    rng = np.random.default_rng(5)
    x, W = rng.normal(size=3), rng.normal(size=(2, 3))
    H = sb.hessian(gradient_penalty, backend=backend)(x, W)
    grad = sb.grad(gradient_penalty)
    h = 1e-6
    fd = np.array([(grad(x + h * e, W) - grad(x - h * e, W)) / (2 * h) for e in np.eye(3)]).T
    np.testing.assert_allclose(H, fd, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(H, H.T, rtol=1e-10, atol=1e-12)


# ---- sb.vjp, sb.jacobian and sb.hessian functions called inside a model ---------------------------------

def layer(W, x):
    return np.tanh(W @ x)


jac_x = sb.jacobian(layer, wrt="x")
jac_both = sb.jacobian(layer, wrt=("W", "x"))
vjp_layer = sb.vjp(layer, wrt=("W", "x"))
hess_x = sb.hessian(energy, wrt="x")
hess_both = sb.hessian(energy, wrt=("x", "W"))


def jacobian_penalty(W, x):
    # a Jacobian-norm penalty (contractive autoencoders): ||d layer / d x||_F^2
    return np.sum(jac_x(W, x) ** 2) + np.sum(layer(W, x))


def jacobian_blocks_inside(W, x):
    JW, Jx = jac_both(W, x)
    return np.sum(JW ** 2) + np.sum(np.sin(Jx))


def vjp_inside(W, x, u):
    y, (dW, dx) = vjp_layer(W, x, cotangent=u)
    return np.sum(dW * dW) + np.sum(dx * x) + np.sum(y * u)


def hessian_inside(x, W):
    return np.sum(hess_x(x, W) ** 2)


def hessian_blocks_inside(x, W):
    (Hxx, HxW), (HWx, HWW) = hess_both(x, W)
    return np.sum(Hxx * Hxx) + np.sum(HxW) + np.sum(HWx * HWx) + np.sum(np.tanh(HWW))


@pytest.mark.parametrize("rows", [3, 6])  # a 4-entry x: the Jacobian by reverse mode (3 rows), forward (6)
@pytest.mark.parametrize("model", [jacobian_penalty, jacobian_blocks_inside])
def test_jacobian_calls_inside_a_model(model, rows, backend):
    rng = np.random.default_rng(6)
    args = [0.5 * rng.normal(size=(rows, 4)), rng.normal(size=4)]
    f = sb.value_and_grad(model, wrt=(0, 1), backend=backend)
    value, grads = f(*args)
    np.testing.assert_allclose(value, model(*args), rtol=1e-12)  # model(*args): the jacobian called from Python
    assert_gradients_match(model, grads, args, (0, 1), rtol=1e-4, atol=1e-6)
    assert jac_x(*args).shape == (rows, 4)


def test_vjp_calls_inside_a_model(backend):
    rng = np.random.default_rng(7)
    args = [0.5 * rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=3)]
    value, grads = sb.value_and_grad(vjp_inside, wrt=(0, 1, 2), backend=backend)(*args)
    np.testing.assert_allclose(value, vjp_inside(*args), rtol=1e-12)
    assert_gradients_match(vjp_inside, grads, args, (0, 1, 2), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("model", [hessian_inside, hessian_blocks_inside])
def test_hessian_calls_inside_a_model(model, backend):
    """Third derivatives: the gradient of a function of the Hessian."""
    rng = np.random.default_rng(8)
    args = [rng.normal(size=4), 0.5 * rng.normal(size=(3, 4))]
    value, grads = sb.value_and_grad(model, wrt=(0, 1), backend=backend)(*args)
    np.testing.assert_allclose(value, model(*args), rtol=1e-12)
    assert_gradients_match(model, grads, args, (0, 1), rtol=1e-4, atol=1e-6)


def test_hvp_of_a_jacobian_penalty(backend):
    """Forward over reverse over a model holding a (reverse-mode) Jacobian: hvp == Hessian @ v, the
    Hessian from finite differences of the compiled gradient."""
    rng = np.random.default_rng(9)
    W, x, v = 0.5 * rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=4)
    hv = sb.hvp(jacobian_penalty, wrt="x", backend=backend)(W, x, v=v)
    grad = sb.grad(jacobian_penalty, wrt="x")
    h = 1e-6
    np.testing.assert_allclose(hv, (grad(W, x + h * v) - grad(W, x - h * v)) / (2 * h), rtol=1e-5, atol=1e-7)


def _cotangent_of_the_wrong_shape(W, x, u):
    y, (dW, dx) = vjp_layer(W, x, cotangent=u)
    return np.sum(dx)


def test_a_cotangent_not_shaped_like_the_result_is_rejected():
    with pytest.raises(sb.CompileError, match=r"`cotangent=` of the sb.vjp function of `layer` has shape \(4,\); "
                                              r"its result has shape \(3,\)"):
        sb.grad(_cotangent_of_the_wrong_shape)(np.ones((3, 4)), np.ones(4), np.ones(4))
