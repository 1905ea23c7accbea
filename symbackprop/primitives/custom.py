"""A call of an sb.custom_vjp helper: the helper's forward value, differentiated by the user's rule.

The frontend traces the helper's body as usual (its value is the node's last input) and
appends one `custom_vjp` node reading the helper's array inputs and that value. Reverse
mode asks this node for its adjoint: the rule's body, traced at that point with x..., out
and g bound (the frontend gives the tracing as `attrs["adjoint"]`), so the rule is
inlined into the backward pass like a built-in adjoint, and nothing is sent into the
helper's own body. Afterwards (passes/dce.py) the node's readers read the helper's value:
no backend sees it.
"""
from __future__ import annotations

from .registry import Primitive, primitive


@primitive("custom_vjp")
class CustomVJPCall(Primitive):
    """inputs: the helper's array arguments, then its traced value; attrs: helper, rule, rule_loc, adjoint."""

    rewritten_away = True

    def infer(self, node):
        out = node.inputs[-1]
        return [(out.shape, out.dtype)]

    def adjoint(self, node, gs, wants):
        grads = node.attrs["adjoint"](node, gs[0], wants[:-1])
        return list(grads) + [None]  # the helper's own body is not differentiated

    def tangent(self, node, ts, batch):
        # forward mode differentiates the helper's own body (its value is the last input)
        return [ts[-1]]

    def describe(self, node):
        return "custom_vjp"

    def written(self, node, ins) -> str:
        return f"{node.attrs['helper']}({', '.join(ins[:-1])})"

    def explain_text(self, node, names) -> str:
        return f"custom rule {node.attrs['rule']} ({node.attrs['rule_loc'].short()}) of {node.attrs['helper']}"


@primitive("custom_jvp")
class CustomJVPCall(Primitive):
    """inputs: the helper's array arguments, then its traced value; attrs: helper, rule, rule_loc, tangent
    (the rule traced on the tangents, frontend), adjoint (the rule's transpose)."""

    rewritten_away = True

    def infer(self, node):
        out = node.inputs[-1]
        return [(out.shape, out.dtype)]

    def adjoint(self, node, gs, wants):
        grads = node.attrs["adjoint"](node, gs[0], wants[:-1])
        return list(grads) + [None]  # the helper's own body is not differentiated

    def tangent(self, node, ts, batch):
        return [node.attrs["tangent"](node, ts[:-1], batch)]

    def describe(self, node):
        return "custom_jvp"

    def written(self, node, ins) -> str:
        return f"{node.attrs['helper']}({', '.join(ins[:-1])})"

    def explain_text(self, node, names) -> str:
        return f"custom rule {node.attrs['rule']} ({node.attrs['rule_loc'].short()}) of {node.attrs['helper']}"


#: the calls of helpers with rules of the user's: rewritten to the helper's value once differentiated
CUSTOM_CALLS = (CustomVJPCall, CustomJVPCall)
