"""Shape operations: reshape, transpose, broadcasting and its adjoint, concatenate."""
from __future__ import annotations

from ..errors import ShapeError
from ..ir import current_loc
from . import ops
from .index import index_text
from .reduce import reduction_call
from .registry import Primitive, primitive


def _inserted_axes(old, new):
    """The index (slices and None) that turns shape `old` into `new`, if one does."""
    if len(new) <= len(old):
        return None
    key, j = [], 0
    for s in new:
        if j < len(old) and s == old[j]:
            key.append(slice(None))
            j += 1
        elif s == 1:
            key.append(None)
        else:
            return None
    return tuple(key) if j == len(old) else None


@primitive("reshape")
class Reshape(Primitive):
    def infer(self, node):
        return [(node.attrs["shape"], node.inputs[0].dtype)]

    def adjoint(self, node, gs, wants):
        return [ops.reshape(gs[0], node.inputs[0].shape)]

    def numpy(self, node, args, out):
        key = _inserted_axes(node.inputs[0].shape, node.attrs["shape"])
        if node.inputs[0].shape == ():  # a 0-d value may be a Python float, which has no [None]
            return f"np.reshape({args[0]}, {node.attrs['shape']!r})"
        if key is not None:  # x[:, None] reads better than a reshape that only adds axes
            return f"{args[0]}[{index_text(key)}]"
        shape = node.attrs["shape"]
        return f"{args[0]}.reshape({', '.join(map(str, shape)) if shape else '()'})"

    def describe(self, node):
        return f"reshape to {node.attrs['shape']}"


@primitive("transpose")
class Transpose(Primitive):
    def infer(self, node):
        x = node.inputs[0]
        return [(tuple(x.shape[p] for p in node.attrs["perm"]), x.dtype)]

    def adjoint(self, node, gs, wants):
        perm = node.attrs["perm"]
        inverse = [0] * len(perm)
        for i, p in enumerate(perm):
            inverse[p] = i
        return [ops.transpose(gs[0], inverse)]

    def numpy(self, node, args, out):
        perm = node.attrs["perm"]
        if perm == tuple(reversed(range(len(perm)))):
            return f"{args[0]}.T"
        return f"{args[0]}.transpose({', '.join(map(str, perm))})"

    def describe(self, node):
        return "transpose"


@primitive("broadcast_to")
class BroadcastTo(Primitive):
    """Repeat along broadcast axes. Kernels absorb it: NumPy broadcasts for free."""

    def infer(self, node):
        return [(node.attrs["shape"], node.inputs[0].dtype)]

    def adjoint(self, node, gs, wants):
        return [ops.sum_to(gs[0], node.inputs[0].shape)]

    def numpy(self, node, args, out):
        return f"np.broadcast_to({args[0]}, {node.attrs['shape']!r})"

    def describe(self, node):
        return f"broadcast to {node.attrs['shape']}"


@primitive("sum_to")
class SumTo(Primitive):
    """Sum over the axes that broadcasting added or stretched."""

    def infer(self, node):
        return [(node.attrs["shape"], node.inputs[0].dtype)]

    def adjoint(self, node, gs, wants):
        return [ops.broadcast_to(gs[0], node.inputs[0].shape)]

    def numpy(self, node, args, out):
        x, shape = node.inputs[0], node.attrs["shape"]
        lead = x.ndim - len(shape)
        text = args[0]
        if lead:
            text = reduction_call("sum", text, tuple(range(lead)), x.ndim, False)
        stretched = tuple(i for i, s in enumerate(shape) if s == 1 and x.shape[lead + i] != 1)
        if stretched:
            text = reduction_call("sum", text, stretched, len(shape), True)
        return text

    def describe(self, node):
        return f"sum to {node.attrs['shape']}"

    @property
    def numpy_into(self):
        return _sum_to_into


def _sum_to_into(node, args, target):
    """Only a sum over leading axes (bias gradients) writes into its target in one call."""
    x, shape = node.inputs[0], node.attrs["shape"]
    lead = x.ndim - len(shape)
    return reduction_call("sum", args[0], tuple(range(lead)), x.ndim, False, target)


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
        import numpy as np
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

    def numpy(self, node, args, out):
        axis = node.attrs["axis"]
        return f"np.concatenate([{', '.join(args)}], axis={axis})"

    def describe(self, node):
        return f"concatenate along axis {node.attrs['axis']}"


@primitive("copy")
class Copy(Primitive):
    """A fresh array equal to x: what is read after an in-place update must not share memory with it."""

    def infer(self, node):
        x = node.inputs[0]
        return [(x.shape, x.dtype)]

    def adjoint(self, node, gs, wants):
        return [gs[0]]

    def numpy(self, node, args, out):
        return f"np.copy({args[0]})"

    def describe(self, node):
        return "copy"
