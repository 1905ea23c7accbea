"""sb.custom_vjp: a module-level helper with a derivative rule of the user's, written in the language.

    @sb.custom_vjp
    def softplus(x):
        return np.log1p(np.exp(x))

    @softplus.defvjp
    def softplus_vjp(x, out, g):        # the helper's inputs, its value, the incoming gradient
        return g / (1 + np.exp(-x))     # one gradient per input (a tuple for several)

Called outside a model the helper is plain Python. Inside one, the tracer (frontend/trace.py)
inlines its body for the value and appends a primitives.custom node whose adjoint is the
rule's body, traced into the backward pass where reverse mode reaches the call.

sb.custom_jvp is its forward-mode twin: `@helper.defjvp` on `def rule(x, ..., out, t_x, ...)`
returning the value's tangent (linear in the tangents). Forward mode traces the rule where it
reaches the call; reverse mode traces it on tangents of its own and transposes it (the backward
pass of the rule, seeded with g, pipeline/stages.transpose), so sb.grad and hvp use it too.
"""
from __future__ import annotations

import functools
import inspect
import types


class CustomVJP:
    """A helper with a derivative rule of its own (sb.custom_vjp); call it like the helper."""

    def __init__(self, fn):
        if not isinstance(fn, types.FunctionType):
            raise TypeError(f"sb.custom_vjp decorates a function (a module-level def), got {type(fn).__name__}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.rule = None

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def defvjp(self, rule):
        """Register `rule(x, ..., out, g)` (the helper's inputs, its value, the incoming gradient), which
        returns one gradient per input; returns the rule unchanged."""
        if not isinstance(rule, types.FunctionType):
            raise TypeError(f"defvjp takes the rule as a function (a module-level def), got {type(rule).__name__}")
        want = len(inspect.signature(self.fn).parameters) + 2
        got = len(inspect.signature(rule).parameters)
        if got != want:
            names = ", ".join(list(inspect.signature(self.fn).parameters) + ["out", "g"])
            raise TypeError(f"the rule `{rule.__name__}` of `{self.fn.__name__}` takes {got} parameters; it takes "
                            f"the helper's {want - 2} inputs, its value and the incoming gradient: "
                            f"def {rule.__name__}({names})")
        self.rule = rule
        return rule

    def __repr__(self):
        rule = self.rule.__name__ if self.rule is not None else "no rule yet"
        return f"<sb.custom_vjp {self.fn.__name__} ({rule})>"


def custom_vjp(fn):
    """custom_vjp(helper): a decorator giving a module-level helper a derivative rule, set with @helper.defvjp."""
    return CustomVJP(fn)


class CustomJVP:
    """A helper with a forward-mode rule of its own (sb.custom_jvp); call it like the helper."""

    def __init__(self, fn):
        if not isinstance(fn, types.FunctionType):
            raise TypeError(f"sb.custom_jvp decorates a function (a module-level def), got {type(fn).__name__}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.rule = None

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def defjvp(self, rule):
        """Register `rule(x, ..., out, t_x, ...)` (the helper's inputs, its value, one tangent per input),
        which returns the tangent of the value, linear in the tangents; returns the rule unchanged."""
        if not isinstance(rule, types.FunctionType):
            raise TypeError(f"defjvp takes the rule as a function (a module-level def), got {type(rule).__name__}")
        inputs = list(inspect.signature(self.fn).parameters)
        want = 2 * len(inputs) + 1
        got = len(inspect.signature(rule).parameters)
        if got != want:
            names = ", ".join(inputs + ["out"] + [f"t_{p}" for p in inputs])
            raise TypeError(f"the rule `{rule.__name__}` of `{self.fn.__name__}` takes {got} parameters; it takes "
                            f"the helper's {len(inputs)} inputs, its value and one tangent per input: "
                            f"def {rule.__name__}({names})")
        self.rule = rule
        return rule

    def __repr__(self):
        rule = self.rule.__name__ if self.rule is not None else "no rule yet"
        return f"<sb.custom_jvp {self.fn.__name__} ({rule})>"


def custom_jvp(fn):
    """custom_jvp(helper): a decorator giving a module-level helper a forward-mode (tangent) rule, set with
    @helper.defjvp; reverse mode uses the rule's transpose."""
    return CustomJVP(fn)
