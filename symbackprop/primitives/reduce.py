"""Reductions over axes: sum, max, min (mean is a sum divided by the count)."""
from __future__ import annotations

import numpy as np

from . import ops, scalar
from .elementwise import arg, kernel
from .registry import Primitive, primitive


def _reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def axis_text(axes, ndim):
    """`axis=...` arguments as a person writes them (none when reducing everything)."""
    if len(axes) == ndim:
        return ""
    return f"axis={axes[0]}" if len(axes) == 1 else f"axis={axes}"


class Reduction(Primitive):
    method = "?"

    def infer(self, node):
        (x,) = node.inputs
        dtype = x.dtype
        if self.method == "sum" and dtype.kind == "b":
            dtype = np.dtype(np.int64)
        return [(_reduced_shape(x.shape, node.attrs["axes"], node.attrs["keepdims"]), dtype)]

    def describe(self, node):
        return f"{self.method} over axes {node.attrs['axes']}"

    def batch(self, node, ins, batched, n):  # the same reduction behind the batch axis
        return [ops.reduce(self.method, ins[0], ops.shifted(node.attrs["axes"], (n,)), node.attrs["keepdims"])]

    def keep(self, node, v):
        """A reduced value with the reduced axes put back as size 1."""
        if node.attrs["keepdims"]:
            return v
        return ops.expand_to_keepdims(v, node.attrs["axes"], node.inputs[0].ndim)


@primitive("sum")
class Sum(Reduction):
    method = "sum"

    def adjoint(self, node, gs, wants):
        x = node.inputs[0]
        return [ops.broadcast_to(self.keep(node, gs[0]), x.shape)]

    def tangent(self, node, ts, batch):
        return [ops.sum(ts[0], ops.shifted(node.attrs["axes"], batch), keepdims=node.attrs["keepdims"])]


class Extremum(Reduction):
    explain_note = "ties share the gradient"

    def adjoint(self, node, gs, wants):
        # ties share the gradient equally (the kink convention)
        x = node.inputs[0]
        m = self.keep(node, node.out)
        g = self.keep(node, gs[0])
        hit = ops.compare("eq", x, m)
        count = ops.sum(hit, node.attrs["axes"], keepdims=True)
        # g/count with an integer count would be float64: the gradient keeps g's dtype (float32 stays float32)
        h, g_, c = arg(0), arg(1), arg(2)
        return list(kernel([hit, g, count], (scalar.where(h, g_ / c, 0),), x.shape, dtype=g.dtype))

    def tangent(self, node, ts, batch):
        # the mean of the tangents at the extreme entries (ties share, as in the adjoint)
        x, t = node.inputs[0], ts[0]
        hit = ops.compare("eq", x, self.keep(node, node.out))
        count = ops.sum(hit, node.attrs["axes"], keepdims=True)
        h, c = arg(0), arg(1)
        (share,) = kernel([hit, count], (scalar.where(h, 1 / c, 0),), x.shape, dtype=t.dtype)
        return [ops.sum(ops.mul(share, t), ops.shifted(node.attrs["axes"], batch), keepdims=node.attrs["keepdims"])]


@primitive("max")
class Max(Extremum):
    method = "max"


@primitive("min")
class Min(Extremum):
    method = "min"


REDUCTIONS = {"sum": Sum, "max": Max, "min": Min}
