"""Matrix products: matmul (with NumPy's 1-d and batch rules) and outer."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir import current_loc
from . import ops
from .registry import Primitive, primitive


@primitive("matmul")
class MatMul(Primitive):
    @staticmethod
    def result_shape(a, b):
        a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)
        b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)
        if a2[-1] != b2[-2]:
            raise ShapeError(f"matmul: inner dimensions of {tuple(a)} and {tuple(b)} do not match "
                             f"({a2[-1]} != {b2[-2]})", current_loc())
        batch = ops.broadcast_shapes(a2[:-2], b2[:-2], what="matmul batch dimensions")
        shape = batch + (a2[-2], b2[-1])
        if len(a) == 1:
            shape = shape[:-2] + shape[-1:]
        if len(b) == 1:
            shape = shape[:-1]
        return shape

    def infer(self, node):
        a, b = node.inputs
        return [(self.result_shape(a.shape, b.shape), np.result_type(a.dtype, b.dtype))]

    def adjoint(self, node, gs, wants):
        # dA = g @ B.T ; dB = A.T @ g   (with NumPy's 1-d promotion undone)
        a, b = node.inputs
        g = gs[0]
        if a.ndim == 1 and b.ndim == 1:
            return [g * b if wants[0] else None, g * a if wants[1] else None]
        if a.ndim == 2 and b.ndim == 1:
            return [ops.outer(g, b) if wants[0] else None, a.T @ g if wants[1] else None]
        if a.ndim == 1 and b.ndim == 2:
            return [b @ g if wants[0] else None, ops.outer(a, g) if wants[1] else None]
        if a.ndim == 2 and b.ndim == 2:
            return [g @ b.T if wants[0] else None, a.T @ g if wants[1] else None]
        return self._batched(a, b, g, wants)

    @staticmethod
    def _batched(a, b, g, wants):
        a2 = ops.reshape(a, (1,) + a.shape) if a.ndim == 1 else a
        b2 = ops.reshape(b, b.shape + (1,)) if b.ndim == 1 else b
        g2 = ops.reshape(g, MatMul.result_shape(a2.shape, b2.shape))
        da = db = None
        if wants[0]:
            da = ops.reshape(ops.sum_to(g2 @ ops.swap_last(b2), a2.shape), a.shape)
        if wants[1]:
            db = ops.reshape(ops.sum_to(ops.swap_last(a2) @ g2, b2.shape), b.shape)
        return [da, db]

    def tangent(self, node, ts, batch):
        # t(A @ B) = tA @ B + A @ tB, each direction of the batch a matrix product of its own
        a, b = node.inputs
        ta, tb = ts
        out = batch + node.out.shape
        parts = []
        if ta is not None:
            if not batch or a.ndim >= 2:
                parts.append(ops.lift(ta, batch, b.ndim) @ b if batch else ta @ b)
            elif b.ndim <= 2:  # a vector: each direction's row times B
                parts.append(ta @ b)
            else:
                row = ops.reshape(ta, batch + (1,) * (b.ndim - 2) + (1, a.shape[0]))
                parts.append(ops.reshape(row @ b, out))
        if tb is not None:
            if not batch:
                parts.append(a @ tb)
            elif b.ndim >= 2:
                parts.append(a @ ops.lift(tb, batch, a.ndim) if a.ndim >= 2 else a @ tb)
            elif a.ndim <= 2:  # B a vector: each direction's vector times A.T
                parts.append(tb @ a.T if a.ndim == 2 else tb @ a)
            else:
                col = ops.reshape(tb, batch + (1,) * (a.ndim - 2) + (b.shape[0], 1))
                parts.append(ops.reshape(a @ col, out))
        return [ops.add_tangents(parts)]

    def describe(self, node):
        return "matmul"

    def flops(self, node):
        # a multiply and an add per output element and inner index
        a = node.inputs[0]
        return 2 * node.outputs[0].size * (a.shape[-1] if a.ndim else 1)


@primitive("outer")
class Outer(Primitive):
    def infer(self, node):
        a, b = node.inputs
        return [((a.size, b.size), np.result_type(a.dtype, b.dtype))]

    def adjoint(self, node, gs, wants):
        a, b = node.inputs
        g = gs[0]
        flat_a, flat_b = ops.reshape(a, (a.size,)), ops.reshape(b, (b.size,))
        return [ops.reshape(g @ flat_b, a.shape) if wants[0] else None,
                ops.reshape(flat_a @ g, b.shape) if wants[1] else None]

    def tangent(self, node, ts, batch):
        a, b = node.inputs
        ta, tb = ts
        if not batch:
            return [ops.add_tangents([ops.outer(ta, b) if ta is not None else None,
                                      ops.outer(a, tb) if tb is not None else None])]
        parts = []
        if ta is not None:
            parts.append(ops.reshape(ta, batch + (a.size, 1)) * ops.reshape(b, (b.size,)))
        if tb is not None:
            parts.append(ops.reshape(a, (a.size, 1)) * ops.reshape(tb, batch + (1, b.size)))
        return [ops.add_tangents(parts)]

    def describe(self, node):
        return "outer product"
