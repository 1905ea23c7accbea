"""Softmax-family composites, recognised in the forward graph (passes/patterns.py).

Written as exp, sum and log they would differentiate into a chain through the
log; as composites their adjoints are the ones taught: d logsumexp = p,
d log_softmax = g - p * sum(g), d softmax = p * (g - sum(g * p)), with
p = e / s reusing the forward exponentials. The last two sum to zero along the
axis, which is what makes the max-shift `x - max(x)` get no gradient at all.
"""
from __future__ import annotations

from ..ir import append
from . import ops
from .registry import Primitive, primitive


def _keep_shape(shape, axes):
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


class SoftmaxFamily(Primitive):
    explain_note = "{1}/{2} is the softmax, from the forward exponentials"

    def softmax(self, node):
        """p = e / s from the forward exponentials: no second exp."""
        e, s = node.outputs[1], node.outputs[2]
        p = ops.div(e, s)
        if p.name is None:
            p.name = "p"
        return p

    def adjoint(self, node, gs, wants):
        """The family's rule for the output's gradient, plus what reaches e = exp(z) and s = sum(e): a
        backward pass that read p = e / s, differentiated again (grad of grad, hvp), sends gradients there."""
        parts = [self.output_adjoint(node, gs[0])] if gs[0] is not None else []
        g_e = gs[1]
        if gs[2] is not None:
            g_e = gs[2] if g_e is None else ops.add(g_e, gs[2])
        if g_e is not None:
            parts.append(ops.mul(g_e, node.outputs[1]))
        return [ops.add_tangents(parts)]

    def tangent(self, node, ts, batch):
        """The tangents of (out, e, s): t_e = e * t_z, t_s = sum(t_e); the output's by its family's rule
        from the mean of t_z under the softmax, sum(p * t_z)."""
        t, axes = ts[0], ops.shifted(node.attrs["axes"], batch)
        e, s = node.outputs[1], node.outputs[2]
        t_e = ops.mul(e, t)
        t_s = ops.sum(t_e, axes, keepdims=True)
        mean = ops.div(t_s, s)  # sum(p * t_z), kept along the axes
        return [self.output_tangent(node, t, mean, axes, batch), t_e, t_s]

    def batch(self, node, ins, batched, n):
        return ops.as_list(append(node.prim, ins, {**node.attrs, "axes": ops.shifted(node.attrs["axes"], (n,))}))


@primitive("logsumexp")
class LogSumExp(SoftmaxFamily):
    """log(sum(exp(z), axes)); outputs (lse, e = exp(z), s = sum(e) with keepdims)."""

    def infer(self, node):
        z = node.inputs[0]
        axes, keep = node.attrs["axes"], node.attrs["keepdims"]
        lse = _keep_shape(z.shape, axes) if keep else tuple(d for i, d in enumerate(z.shape) if i not in axes)
        return [(lse, z.dtype), (z.shape, z.dtype), (_keep_shape(z.shape, axes), z.dtype)]

    def output_adjoint(self, node, g):
        z = node.inputs[0]
        g = g if node.attrs["keepdims"] else ops.expand_to_keepdims(g, node.attrs["axes"], z.ndim)
        p = self.softmax(node)
        return ops.mul(g, p)

    def output_tangent(self, node, t, mean, axes, batch):
        return mean if node.attrs["keepdims"] else ops.reshape(mean, batch + node.out.shape)

    def describe(self, node):
        return "logsumexp"


@primitive("log_softmax")
class LogSoftmax(SoftmaxFamily):
    """z - logsumexp(z); outputs (log p, e = exp(z), s = sum(e) with keepdims)."""

    def infer(self, node):
        z = node.inputs[0]
        return [(z.shape, z.dtype), (z.shape, z.dtype), (_keep_shape(z.shape, node.attrs["axes"]), z.dtype)]

    def output_adjoint(self, node, g):
        # d log_softmax: g - p * sum(g)   (sums to zero along the axes)
        total = ops.sum(g, node.attrs["axes"], keepdims=True)
        d = ops.sub(g, ops.mul(self.softmax(node), total))
        d.zero_sum_axes = frozenset(node.attrs["axes"])
        return d

    def output_tangent(self, node, t, mean, axes, batch):
        return ops.sub(t, mean)

    def describe(self, node):
        return "log_softmax"


@primitive("softmax")
class Softmax(SoftmaxFamily):
    """exp(z) / sum(exp(z)); outputs (p, e, s)."""

    explain_note = ""  # its gradient reads p, the output itself

    def infer(self, node):
        z = node.inputs[0]
        return [(z.shape, z.dtype), (z.shape, z.dtype), (_keep_shape(z.shape, node.attrs["axes"]), z.dtype)]

    def output_adjoint(self, node, g):
        # d softmax: p * (g - sum(g * p))   (sums to zero along the axes)
        p = node.outputs[0]
        total = ops.sum(ops.mul(g, p), node.attrs["axes"], keepdims=True)
        d = ops.elementwise(lambda p_, g_, t: p_ * (g_ - t), p, g, total, what="softmax gradient")
        d.zero_sum_axes = frozenset(node.attrs["axes"])
        return d

    def output_tangent(self, node, t, mean, axes, batch):
        return ops.mul(node.outputs[0], ops.sub(t, mean))

    def describe(self, node):
        return "softmax"

