"""Optimizers for `sb.train_step`: update rules built as IR, so every backend lowers them.

An optimizer declares its hyperparameters (runtime scalar inputs of the
generated step, read from its attributes at every call), its per-parameter
state buffers (zeros before the first step, the shape and dtype of their
parameter) and whether it counts steps (`t`, 1 on the first step). A subclass
builds, with ordinary Value arithmetic, the new value of each buffer
(`moments`) and the step taken (`delta`, the parameter becoming p - delta);
the base class adds weight decay, named by `decay`: "l2" adds
weight_decay*p to the gradient (torch.optim.SGD/Adam's `weight_decay`),
"decoupled" multiplies p by 1 - lr*weight_decay before the step (AdamW's).
Each rule is built under its formula, which becomes the comment of the
generated statement. The formulas, with their conventions, are in the class
docstrings and in docs/training.md.

`lr` (or any hyperparameter) may be a callable of the step count, such as a
schedule from `schedules`: `values(t)` evaluates it before each update.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

from . import schedules
from .ir import rule
from .primitives import ops

__all__ = ["Optimizer", "SGD", "RMSProp", "Adam", "AdamW", "schedules"]

#: the two ways of decaying weights, by the name `decay=` takes
DECAYS = ("l2", "decoupled")


def named(v, name):
    """Give a scalar of the update its own named statement (and keep it out of the elementwise loops)."""
    if ops.is_value(v) and v.name is None:
        v.name = name
    return v


def sqrt(x):
    return ops.unary("sqrt", x)


class Optimizer:
    """The interface `train_step` compiles; subclasses set the class attributes, `moments` and `delta`."""

    #: state buffers per parameter, each named `<buffer>_<parameter>` in generated code
    buffers: tuple = ()
    #: whether the rule reads the step count t (1 on the first step)
    counts_steps = False
    #: the rule's own hyperparameters; `weight_decay` follows them when a decay is set
    rule_hyperparameters: tuple = ()
    #: the step's formula, p = p - <delta>, for the generated comment
    delta_formula = "lr*g"
    #: None (no weight decay), "l2" or "decoupled"
    decay = None
    weight_decay = 0.0

    @property
    def hyperparameters(self) -> tuple:
        """The names of the runtime scalar inputs, in order (attributes of the optimizer)."""
        return self.rule_hyperparameters + (("weight_decay",) if self.decay else ())

    def structure(self) -> tuple:
        """What the generated code depends on besides hyperparameter values (part of the cache key)."""
        return (type(self).__name__, self.hyperparameters, self.buffers, self.counts_steps, self.decay)

    def shared(self, h, t) -> dict:
        """Scalars computed once per step for every parameter (bias corrections); none by default."""
        return {}

    def moments(self, g, state, h) -> dict:
        """The new value of each state buffer, by buffer name."""
        return {}

    def delta(self, g, new, h, shared):
        """The step: the parameter becomes p - delta (before weight decay); `new` holds the new buffers."""
        raise NotImplementedError

    def parameter_formula(self) -> str:
        if self.decay == "decoupled":
            return f"p = p*(1 - lr*weight_decay) - {self.delta_formula}"
        return f"p = p - {self.delta_formula}"

    def update(self, p, g, state, h, shared) -> list:
        """[(target, new value), ...]: each buffer, then the parameter `p`, given its gradient `g`."""
        if self.decay == "l2":
            with rule("g = g + weight_decay*p"):
                g = g + h.weight_decay * p
        new = self.moments(g, state, h)
        with rule(self.parameter_formula()):
            step = self.delta(g, new, h, shared)
            p_new = p * (1 - h.lr * h.weight_decay) - step if self.decay == "decoupled" else p - step
        return [(state[b], new[b]) for b in self.buffers] + [(p, p_new)]

    def values(self, t=1) -> dict:
        """The hyperparameter values for update t (callables evaluated at t), checked to be real numbers."""
        name = type(self).__name__
        if self.decay is None and self.weight_decay != 0:
            raise ValueError(f"{name}.weight_decay is {self.weight_decay!r} but {name}.decay is None: "
                             f"{_DECAY_HELP}")
        out = {}
        for attr in self.hyperparameters:
            value = getattr(self, attr)
            if callable(value):
                value = value(t)
                what = f"{name}.{attr}({t})"
            else:
                what = f"{name}.{attr}"
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{what} must be a real number, got {value!r}")
            out[attr] = float(value)
        return out

    def __repr__(self):
        args = ", ".join(f"{k}={_show(v)}" for k, v in self._settings().items())
        return f"{type(self).__name__}({args})"

    def _settings(self) -> dict:
        return {name: getattr(self, name) for name in self.hyperparameters}

    def _set_decay(self, weight_decay, decay):
        _check("weight_decay", weight_decay, 0.0)
        if decay is not None and decay not in DECAYS:
            raise ValueError(f"decay must be 'l2' or 'decoupled', got {decay!r}")
        if decay is None and weight_decay != 0:
            raise ValueError(f"{type(self).__name__}(weight_decay={weight_decay!r}) needs decay=: {_DECAY_HELP}")
        self.weight_decay, self.decay = weight_decay, decay

    def _decay_settings(self) -> dict:
        return {"weight_decay": self.weight_decay, "decay": self.decay} if self.decay else {}


_DECAY_HELP = ("say which weight decay you mean: decay='l2' adds weight_decay*p to the gradient (as "
               "torch.optim's weight_decay), decay='decoupled' multiplies p by 1 - lr*weight_decay (as AdamW)")


def _show(value):
    """A hyperparameter as the generated code's notes print it (a plain function by name, never by address)."""
    if callable(value) and not isinstance(value, schedules.Schedule):
        return getattr(value, "__qualname__", type(value).__name__)
    return repr(value)


def _check(name, value, low, high=None, high_open=True):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if value < low or (high is not None and (value >= high if high_open else value > high)):
        bound = f"[{low}, {high})" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be in {bound}, got {value!r}")


def _check_lr(lr):
    if callable(lr) and not isinstance(lr, numbers.Real):
        return  # a schedule: its values are checked as they are used
    _check("lr", lr, 0.0)


class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum (PyTorch's convention, no dampening).

        plain:      p = p - lr*g
        momentum:   v = momentum*v + g ;  p = p - lr*v
        Nesterov:   v = momentum*v + g ;  p = p - lr*(g + momentum*v)

    A momentum of 0 keeps no state; `nesterov` needs a momentum. weight_decay
    needs decay="l2" (g = g + weight_decay*p first, as torch.optim.SGD) or
    decay="decoupled" (p = p*(1 - lr*weight_decay) - lr*v); without momentum
    the two are the same numbers.
    """

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0, decay=None):
        _check_lr(lr)
        _check("momentum", momentum, 0.0, 1.0, high_open=False)
        if nesterov and momentum == 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.lr, self.momentum, self.nesterov = lr, momentum, bool(nesterov)
        self._set_decay(weight_decay, decay)

    @property
    def rule_hyperparameters(self):
        return ("lr", "momentum") if self.momentum else ("lr",)

    @property
    def buffers(self):
        return ("v",) if self.momentum else ()

    @property
    def delta_formula(self):
        if not self.momentum:
            return "lr*g"
        return "lr*(g + momentum*v)" if self.nesterov else "lr*v"

    def structure(self):
        return super().structure() + (self.nesterov,)

    def moments(self, g, state, h):
        if not self.momentum:
            return {}
        with rule("v = momentum*v + g"):
            return {"v": h.momentum * state["v"] + g}

    def delta(self, g, new, h, shared):
        if not self.momentum:
            return h.lr * g
        if self.nesterov:
            return h.lr * (g + h.momentum * new["v"])
        return h.lr * new["v"]

    def _settings(self):
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov, **self._decay_settings()}


class RMSProp(Optimizer):
    """RMSProp (Hinton, 2012): divide the step by a running root mean square of the gradient.

        s = rho*s + (1 - rho)*g**2
        p = p - lr*g/(sqrt(s) + eps)

    weight_decay needs decay="l2" (g = g + weight_decay*p first, as
    torch.optim.RMSprop) or decay="decoupled" (p = p*(1 - lr*weight_decay) - ...).
    """

    rule_hyperparameters = ("lr", "rho", "eps")
    buffers = ("s",)
    delta_formula = "lr*g/(sqrt(s) + eps)"

    def __init__(self, lr=0.001, rho=0.9, eps=1e-8, weight_decay=0.0, decay=None):
        _check_lr(lr)
        _check("rho", rho, 0.0, 1.0)
        _check("eps", eps, 0.0)
        self.lr, self.rho, self.eps = lr, rho, eps
        self._set_decay(weight_decay, decay)

    def moments(self, g, state, h):
        with rule("s = rho*s + (1 - rho)*g**2"):
            return {"s": h.rho * state["s"] + (1 - h.rho) * g**2}

    def delta(self, g, new, h, shared):
        return h.lr * g / (sqrt(new["s"]) + h.eps)

    def _settings(self):
        return {**super()._settings(), **self._decay_settings()}


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction; t counts steps from 1.

        m = beta1*m + (1 - beta1)*g
        v = beta2*v + (1 - beta2)*g**2
        p = p - lr*m_hat/(sqrt(v_hat) + eps),   m_hat = m/(1 - beta1**t),  v_hat = v/(1 - beta2**t)

    computed as p - step_size*m/(sqrt(v)/sqrt(1 - beta2**t) + eps) with
    step_size = lr/(1 - beta1**t): the same numbers, two scalar divisions per step
    instead of two per element. weight_decay needs decay="l2" (g = g +
    weight_decay*p before the moments: torch.optim.Adam's weight_decay) or
    decay="decoupled" (p = p*(1 - lr*weight_decay) first: the same as AdamW).
    """

    rule_hyperparameters = ("lr", "beta1", "beta2", "eps")
    buffers = ("m", "v")
    counts_steps = True
    delta_formula = "lr*m_hat/(sqrt(v_hat) + eps)"

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decay=None):
        _check_lr(lr)
        _check("beta1", beta1, 0.0, 1.0)
        _check("beta2", beta2, 0.0, 1.0)
        _check("eps", eps, 0.0)
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self._set_decay(weight_decay, decay)

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
        return {"m": m, "v": v}

    def delta(self, g, new, h, shared):
        return shared["step_size"] * new["m"] / (sqrt(new["v"]) / shared["sqrt_bias2"] + h.eps)

    def _settings(self):
        return {**super()._settings(), **self._decay_settings()}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019): the decay is not part of g.

        m, v as in Adam
        p = p - lr*(m_hat/(sqrt(v_hat) + eps) + weight_decay*p)

    written as p*(1 - lr*weight_decay) followed by Adam's step, as PyTorch does;
    the same as Adam(weight_decay=..., decay="decoupled").
    """

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
        super().__init__(lr, beta1, beta2, eps, weight_decay, decay="decoupled")

    def parameter_formula(self):
        return "p = p - lr*(m_hat/(sqrt(v_hat) + eps) + weight_decay*p)"

    def _settings(self):
        return Optimizer._settings(self)
