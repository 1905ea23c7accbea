"""Learning-rate schedules (`sb.optim.schedules`): callables of the step count t, 1 on the first update.

An optimizer's `lr` may be a number, any callable `lr(t) -> float`, or one of
these. `train_step` evaluates it in Python before each update and passes the
number to the compiled step, whose learning rate is a runtime input: a schedule
never recompiles anything. Every formula is written with s = t - 1, the number
of updates already made, so that the first update uses the schedule's starting
value (optax's convention, whose step counter starts at 0). The formulas are in
docs/training.md.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

__all__ = ["Schedule", "constant", "step", "exponential", "cosine", "warmup_cosine"]


def _real(name, value, low=None, positive=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if positive and value <= 0 or low is not None and value < low:
        raise ValueError(f"{name} must be {'> 0' if positive else f'>= {low}'}, got {value!r}")


def _count(name, value, low=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")


class Schedule:
    """The learning rate at update t (1 on the first update)."""

    def __call__(self, t: int) -> float:
        _count("the step count t", t)
        return float(self.at(t - 1))

    def at(self, s: int) -> float:
        """The value after s updates."""
        raise NotImplementedError


@dataclass(frozen=True)
class constant(Schedule):
    """lr at every update."""

    lr: float

    def __post_init__(self):
        _real("lr", self.lr, low=0.0)

    def at(self, s):
        return self.lr


@dataclass(frozen=True)
class step(Schedule):
    """lr * gamma**(s // every): multiplied by gamma after every `every` updates (PyTorch's StepLR)."""

    lr: float
    every: int
    gamma: float = 0.1

    def __post_init__(self):
        _real("lr", self.lr, low=0.0)
        _count("every", self.every)
        _real("gamma", self.gamma, low=0.0)

    def at(self, s):
        return self.lr * self.gamma ** (s // self.every)


@dataclass(frozen=True)
class exponential(Schedule):
    """lr * gamma**s: multiplied by gamma after each update."""

    lr: float
    gamma: float

    def __post_init__(self):
        _real("lr", self.lr, low=0.0)
        _real("gamma", self.gamma, low=0.0)

    def at(self, s):
        return self.lr * self.gamma ** s


def _cosine(lr, lr_min, progress):
    """From lr at progress 0 down to lr_min at progress 1 along half a cosine, then lr_min."""
    progress = min(progress, 1.0)
    return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * progress)) / 2


@dataclass(frozen=True)
class cosine(Schedule):
    """lr_min + (lr - lr_min)*(1 + cos(pi*min(s, total)/total))/2: lr_min after `total` updates, then kept."""

    lr: float
    total: int
    lr_min: float = 0.0

    def __post_init__(self):
        _real("lr", self.lr, low=0.0)
        _count("total", self.total)
        _real("lr_min", self.lr_min, low=0.0)

    def at(self, s):
        return _cosine(self.lr, self.lr_min, s / self.total)


@dataclass(frozen=True)
class warmup_cosine(Schedule):
    """Linear from `start` to lr over `warmup` updates, then cosine down to lr_min at update `total`.

        s < warmup:  start + (lr - start)*s/warmup
        otherwise:   lr_min + (lr - lr_min)*(1 + cos(pi*min(s - warmup, total - warmup)/(total - warmup)))/2

    as optax's warmup_cosine_decay_schedule (init_value=start, peak_value=lr, decay_steps=total).
    """

    lr: float
    warmup: int
    total: int
    lr_min: float = 0.0
    start: float = 0.0

    def __post_init__(self):
        _real("lr", self.lr, low=0.0)
        _count("warmup", self.warmup, low=0)
        _count("total", self.total)
        if self.total <= self.warmup:
            raise ValueError(f"total ({self.total}) must be larger than warmup ({self.warmup})")
        _real("lr_min", self.lr_min, low=0.0)
        _real("start", self.start, low=0.0)

    def at(self, s):
        if s < self.warmup:
            return self.start + (self.lr - self.start) * s / self.warmup
        return _cosine(self.lr, self.lr_min, (s - self.warmup) / (self.total - self.warmup))
