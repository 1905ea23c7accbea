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
