"""Optimizers for `sb.train_step`: update rules built as IR, so every backend lowers them.

An optimizer declares its hyperparameters (runtime scalar inputs of the
generated step, read from its attributes at every call), its per-parameter
state buffers (zeros before the first step, the shape and dtype of their
parameter) and whether it counts steps (`t`, 1 on the first step). `update`
builds, with ordinary Value arithmetic, the new value of each buffer and of the
parameter; each rule is built under its formula, which becomes the comment of
the generated statement. The formulas, with their conventions, are in the class
docstrings and in docs/training.md.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

from .ir import rule
from .primitives import ops

__all__ = ["Optimizer", "SGD", "RMSProp", "Adam", "AdamW"]


def named(v, name):
    """Give a scalar of the update its own named statement (and keep it out of the elementwise loops)."""
    if ops.is_value(v) and v.name is None:
        v.name = name
    return v


def sqrt(x):
    return ops.unary("sqrt", x)


class Optimizer:
    """The interface `train_step` compiles; subclasses set the class attributes and `update`."""

    #: state buffers per parameter, each named `<buffer>_<parameter>` in generated code
    buffers: tuple = ()
    #: whether the rule reads the step count t (1 on the first step)
    counts_steps = False

    @property
    def hyperparameters(self) -> tuple:
        """The names of the runtime scalar inputs, in order (attributes of the optimizer)."""
        raise NotImplementedError

    def structure(self) -> tuple:
        """What the generated code depends on besides hyperparameter values (part of the cache key)."""
        return (type(self).__name__, self.hyperparameters, self.buffers, self.counts_steps)

    def shared(self, h, t) -> dict:
        """Scalars computed once per step for every parameter (bias corrections); none by default."""
        return {}

    def update(self, p, g, state, h, shared) -> list:
        """[(target, new value), ...]: each buffer, then the parameter `p`, given its gradient `g`."""
        raise NotImplementedError

    def values(self) -> dict:
        """The current hyperparameter values, checked to be real numbers."""
        out = {}
        for name in self.hyperparameters:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{type(self).__name__}.{name} must be a real number, got {value!r}")
            out[name] = float(value)
        return out

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._settings().items())
        return f"{type(self).__name__}({args})"

    def _settings(self) -> dict:
        return {name: getattr(self, name) for name in self.hyperparameters}


def _check(name, value, low, high=None, high_open=True):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if value < low or (high is not None and (value >= high if high_open else value > high)):
        bound = f"[{low}, {high})" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be in {bound}, got {value!r}")


class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum (PyTorch's convention, no dampening).

        plain:      p = p - lr*g
        momentum:   v = momentum*v + g ;  p = p - lr*v
        Nesterov:   v = momentum*v + g ;  p = p - lr*(g + momentum*v)

    A momentum of 0 keeps no state; `nesterov` needs a momentum.
    """

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False):
        _check("lr", lr, 0.0)
        _check("momentum", momentum, 0.0, 1.0, high_open=False)
        if nesterov and momentum == 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.lr, self.momentum, self.nesterov = lr, momentum, bool(nesterov)

    @property
    def hyperparameters(self):
        return ("lr", "momentum") if self.momentum else ("lr",)

    @property
    def buffers(self):
        return ("v",) if self.momentum else ()

    def structure(self):
        return super().structure() + (self.nesterov,)

    def update(self, p, g, state, h, shared):
        if not self.momentum:
            with rule("p = p - lr*g"):
                return [(p, p - h.lr * g)]
        with rule("v = momentum*v + g"):
            v = h.momentum * state["v"] + g
        if self.nesterov:
            with rule("p = p - lr*(g + momentum*v)"):
                return [(state["v"], v), (p, p - h.lr * (g + h.momentum * v))]
        with rule("p = p - lr*v"):
            return [(state["v"], v), (p, p - h.lr * v)]

    def _settings(self):
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov}


class RMSProp(Optimizer):
    """RMSProp (Hinton, 2012): divide the step by a running root mean square of the gradient.

        s = rho*s + (1 - rho)*g**2
        p = p - lr*g/(sqrt(s) + eps)
    """

    hyperparameters = ("lr", "rho", "eps")
    buffers = ("s",)

    def __init__(self, lr=0.001, rho=0.9, eps=1e-8):
        _check("lr", lr, 0.0)
        _check("rho", rho, 0.0, 1.0)
        _check("eps", eps, 0.0)
        self.lr, self.rho, self.eps = lr, rho, eps

    def update(self, p, g, state, h, shared):
        with rule("s = rho*s + (1 - rho)*g**2"):
            s = h.rho * state["s"] + (1 - h.rho) * g**2
        with rule("p = p - lr*g/(sqrt(s) + eps)"):
            return [(state["s"], s), (p, p - h.lr * g / (sqrt(s) + h.eps))]


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction; t counts steps from 1.

        m = beta1*m + (1 - beta1)*g
        v = beta2*v + (1 - beta2)*g**2
        p = p - lr*m_hat/(sqrt(v_hat) + eps),   m_hat = m/(1 - beta1**t),  v_hat = v/(1 - beta2**t)

    computed as p - step_size*m/(sqrt(v)/sqrt(1 - beta2**t) + eps) with
    step_size = lr/(1 - beta1**t): the same numbers, two scalar divisions per step
    instead of two per element.
    """

    hyperparameters = ("lr", "beta1", "beta2", "eps")
    buffers = ("m", "v")
    counts_steps = True

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8):
        _check("lr", lr, 0.0)
        _check("beta1", beta1, 0.0, 1.0)
        _check("beta2", beta2, 0.0, 1.0)
        _check("eps", eps, 0.0)
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps

    def shared(self, h, t):
        with rule("bias correction: m_hat = m/(1 - beta1**t)"):
            step_size = named(h.lr / (1 - h.beta1**t), "step_size")
        with rule("bias correction: v_hat = v/(1 - beta2**t)"):
            root = named(sqrt(1 - h.beta2**t), "sqrt_bias2")
        return {"step_size": step_size, "sqrt_bias2": root}

    def moments(self, g, state, h):
        with rule("m = beta1*m + (1 - beta1)*g"):
            m = h.beta1 * state["m"] + (1 - h.beta1) * g
        with rule("v = beta2*v + (1 - beta2)*g**2"):
            v = h.beta2 * state["v"] + (1 - h.beta2) * g**2
        return m, v

    def update(self, p, g, state, h, shared):
        m, v = self.moments(g, state, h)
        with rule("p = p - lr*m_hat/(sqrt(v_hat) + eps)"):
            new = p - shared["step_size"] * m / (sqrt(v) / shared["sqrt_bias2"] + h.eps)
        return [(state["m"], m), (state["v"], v), (p, new)]


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019): the decay is not part of g.

        m, v as in Adam
        p = p - lr*(m_hat/(sqrt(v_hat) + eps) + weight_decay*p)

    written as p*(1 - lr*weight_decay) followed by Adam's step, as PyTorch does.
    """

    hyperparameters = ("lr", "beta1", "beta2", "eps", "weight_decay")

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
        super().__init__(lr, beta1, beta2, eps)
        _check("weight_decay", weight_decay, 0.0)
        self.weight_decay = weight_decay

    def update(self, p, g, state, h, shared):
        m, v = self.moments(g, state, h)
        with rule("p = p - lr*(m_hat/(sqrt(v_hat) + eps) + weight_decay*p)"):
            new = p * (1 - h.lr * h.weight_decay) - shared["step_size"] * m / (sqrt(v) / shared["sqrt_bias2"] + h.eps)
        return [(state["m"], m), (state["v"], v), (p, new)]
