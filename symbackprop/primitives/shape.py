"""Shape operations: reshape, transpose, broadcasting and its adjoint, concatenate."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir import append, current_loc
from . import ops
from .registry import Primitive, primitive


@primitive("reshape")
class Reshape(Primitive):
    view = True

    def infer(self, node):
        return [(node.attrs["shape"], node.inputs[0].dtype)]

    def adjoint(self, node, gs, wants):
        return [ops.reshape(gs[0], node.inputs[0].shape)]

    def tangent(self, node, ts, batch):
        return [ops.reshape(ts[0], batch + node.attrs["shape"])]

    def batch(self, node, ins, batched, n):  # linear: the tangent rule, the batch axis its direction
        return self.tangent(node, ins, (n,))

    def describe(self, node):
        return f"reshape to {node.attrs['shape']}"


@primitive("transpose")
class Transpose(Primitive):
    view = True

    def infer(self, node):
        x = node.inputs[0]
        return [(tuple(x.shape[p] for p in node.attrs["perm"]), x.dtype)]

    def adjoint(self, node, gs, wants):
        perm = node.attrs["perm"]
        inverse = [0] * len(perm)
        for i, p in enumerate(perm):
            inverse[p] = i
        return [ops.transpose(gs[0], inverse)]

    def tangent(self, node, ts, batch):
        nb = len(batch)
        return [ops.transpose(ts[0], tuple(range(nb)) + tuple(p + nb for p in node.attrs["perm"]))]

    def batch(self, node, ins, batched, n):
        return self.tangent(node, ins, (n,))

    def describe(self, node):
        return "transpose"


@primitive("broadcast_to")
class BroadcastTo(Primitive):
    view = True

    """Repeat along broadcast axes. Kernels absorb it: NumPy broadcasts for free."""

    def infer(self, node):
        return [(node.attrs["shape"], node.inputs[0].dtype)]

    def adjoint(self, node, gs, wants):
        return [ops.sum_to(gs[0], node.inputs[0].shape)]

    def tangent(self, node, ts, batch):
        shape = node.attrs["shape"]
        return [ops.broadcast_to(ops.lift(ts[0], batch, len(shape)), batch + shape)]

    def batch(self, node, ins, batched, n):
        return self.tangent(node, ins, (n,))

    def describe(self, node):
        return f"broadcast to {node.attrs['shape']}"


@primitive("sum_to")
class SumTo(Primitive):
    """Sum over the axes that broadcasting added or stretched."""

    def infer(self, node):
        return [(node.attrs["shape"], node.inputs[0].dtype)]

    def adjoint(self, node, gs, wants):
        return [ops.broadcast_to(gs[0], node.inputs[0].shape)]

    def tangent(self, node, ts, batch):
        x, shape = node.inputs[0], node.attrs["shape"]
        if not batch:
            t = ops.sum_to(ts[0], shape)
        else:  # the summed axes behind the batch axes, kept as 1s, then dropped
            kept = batch + (1,) * (x.ndim - len(shape)) + shape
            t = ops.sum_to(ts[0], kept)
            t = None if t is None else ops.reshape(t, batch + shape)
        return [t if t is not None else ops.zero_tangent(node.out, batch)]

    def batch(self, node, ins, batched, n):
        return self.tangent(node, ins, (n,))

    def describe(self, node):
        return f"sum to {node.attrs['shape']}"


@primitive("concatenate")
class Concatenate(Primitive):
    @staticmethod
    def result_shape(shapes, axis):
        first = shapes[0]
        for s in shapes[1:]:
            if len(s) != len(first) or any(a != b for i, (a, b) in enumerate(zip(s, first)) if i != axis):
                raise ShapeError(f"np.concatenate along axis {axis} needs matching shapes, got {list(shapes)}",
                                 current_loc())
        total = sum(s[axis] for s in shapes)
        return first[:axis] + (total,) + first[axis + 1:]

    def infer(self, node):
        shape = self.result_shape([v.shape for v in node.inputs], node.attrs["axis"])
        return [(shape, np.result_type(*[v.dtype for v in node.inputs]))]

    def adjoint(self, node, gs, wants):
        axis, start, out = node.attrs["axis"], 0, []
        for v, want in zip(node.inputs, wants):
            stop = start + v.shape[axis]
            key = (slice(None),) * axis + (slice(start, stop),)
            out.append(ops.index(gs[0], key) if want else None)
            start = stop
        return out

    def tangent(self, node, ts, batch):
        parts = [t if t is not None else ops.zero_tangent(v, batch) for v, t in zip(node.inputs, ts)]
        return [ops.concatenate(parts, node.attrs["axis"] + len(batch))]

    def batch(self, node, ins, batched, n):
        parts = [ops.batched(v, b, n) for v, b in zip(ins, batched)]
        return [ops.concatenate(parts, node.attrs["axis"] + 1)]

    def describe(self, node):
        return f"concatenate along axis {node.attrs['axis']}"


@primitive("stop_gradient")
class StopGradient(Primitive):
    """sb.stop_gradient(x): x's value with derivative zero. Reverse mode sends nothing through it, and
    passes/dce.py's drop_stop_gradients then reads x itself: no backend ever sees it."""

    rewritten_away = True
    explain_note = "sb.stop_gradient: no gradient flows back through it"

    def infer(self, node):
        x = node.inputs[0]
        return [(x.shape, x.dtype)]

    def adjoint(self, node, gs, wants):
        return [None]

    def tangent(self, node, ts, batch):
        return [None]

    def batch(self, node, ins, batched, n):
        return [append(StopGradient, ins)]

    def describe(self, node):
        return "stop_gradient"


@primitive("copy")
class Copy(Primitive):
    """A fresh array equal to x: what is read after an in-place update must not share memory with it."""

    def infer(self, node):
        x = node.inputs[0]
        return [(x.shape, x.dtype)]

    def adjoint(self, node, gs, wants):
        return [gs[0]]

    def tangent(self, node, ts, batch):
        return [ts[0]]

    def batch(self, node, ins, batched, n):
        return [append(Copy, ins, node.attrs)]

    def describe(self, node):
        return "copy"
