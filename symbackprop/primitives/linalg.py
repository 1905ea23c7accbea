"""Matrix products (matmul with NumPy's 1-d and batch rules, outer) and numpy.linalg's solve, inv, det,
slogdet, cholesky, eigh and pinv."""
from __future__ import annotations

import numpy as np

from ..errors import CompileError, ShapeError
from ..ir import append, current_loc
from . import ops
from .elementwise import constant
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

    def batch(self, node, ins, batched, n):
        # a product per example, written as few BLAS calls as the shapes allow: a batched operand times
        # an unbatched matrix is one product with the batch folded into the rows; a product of batched
        # operands over an inner size of 1 (x.T @ d_z of one example) is an elementwise outer product
        (a, b), (ba, bb) = ins, batched
        ra, rb = node.inputs[0].ndim, node.inputs[1].ndim
        k = node.inputs[0].shape[-1]
        out = (n,) + node.out.shape
        if ba and bb:
            if ra == 1 and rb == 1:  # a dot product per example
                return [ops.sum(ops.mul(a, b), axis=1)]
            a2 = ops.reshape(a, (n, 1, k)) if ra == 1 else a
            b2 = ops.reshape(b, (n, k, 1)) if rb == 1 else b
            rank = max(a2.ndim, b2.ndim) - 1
            a2, b2 = ops.lift(a2, (n,), rank), ops.lift(b2, (n,), rank)
            made = ops.mul(a2, b2) if k == 1 else a2 @ b2
        elif ba:
            if rb <= 2:
                made = ops.reshape(a, (a.size // k, k)) @ b
            else:
                a2 = ops.reshape(a, (n, 1, k)) if ra == 1 else a
                made = ops.lift(a2, (n,), rb) @ b
        else:
            if rb == 1 and ra == 2:
                made = b @ a.T
            elif rb == 1 and ra > 2:
                made = a @ ops.reshape(b, (n,) + (1,) * (ra - 2) + (k, 1))
            elif rb == 1:
                made = b @ a
            else:
                made = a @ ops.lift(b, (n,), ra)
        return [ops.reshape(made, out)]

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

    def batch(self, node, ins, batched, n):
        (a, b), (ba, bb) = ins, batched
        sa, sb = node.inputs[0].size, node.inputs[1].size
        column = ops.reshape(a, (n, sa, 1) if ba else (sa, 1))
        row = ops.reshape(b, (n, 1, sb) if bb else (sb,))
        return [ops.mul(column, row)]

    def describe(self, node):
        return "outer product"


# ---- linear algebra (numpy.linalg): 2-d matrices, one primitive each, adjoints beside them ---------------
#
# Symmetric inputs (cholesky, eigh) are read as NumPy reads them: its lower triangle only (UPLO='L'),
# so the gradient lives on the lower triangle, each off-diagonal entry carrying what it does to both
# halves of the symmetric matrix it stands for (central differences on the input see exactly that);
# for an input built symmetric (a = b @ b.T) the gradient of b is the usual one.

def _square(a, what):
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        from_shape = "a stack of matrices" if a.ndim > 2 else f"shape {a.shape}"
        raise ShapeError(f"{what} takes one square matrix (2-d), got {from_shape}", current_loc())
    if a.dtype.kind != "f":
        raise ShapeError(f"{what} takes a float matrix, got {a.dtype}", current_loc())


def _eye(n, dtype):
    return constant(np.eye(n, dtype=dtype), f"np.eye({n}, dtype=np.{np.dtype(dtype)})")


def _tri(n, k, dtype):
    """The 0/1 mask of the entries on and below diagonal k."""
    return constant(np.tri(n, n, k, dtype=dtype), f"np.tri({n}, {n}, k={k}, dtype=np.{np.dtype(dtype)})")


def _lower_entries(G):
    """The gradient with respect to the lower-triangle entries a symmetric reader takes: tril(G + G.T, -1)
    plus G's diagonal."""
    n = G.shape[0]
    off = ops.mul(ops.add(G, G.T), _tri(n, -1, G.dtype))
    return ops.add(off, ops.mul(G, _eye(n, G.dtype)))


@primitive("solve")
class Solve(Primitive):
    """x with a @ x = b (b a vector or a matrix of columns): np.linalg.solve."""

    def infer(self, node):
        a, b = node.inputs
        return [(b.shape, np.result_type(a.dtype, b.dtype))]

    def adjoint(self, node, gs, wants):
        # d_b = solve(a.T, g); d_a = -d_b x^T
        a, b = node.inputs
        x, g = node.outputs[0], gs[0]
        d_b = solve(a.T, g)
        d_a = ops.neg(ops.outer(d_b, x) if b.ndim == 1 else d_b @ x.T) if wants[0] else None
        return [d_a, d_b if wants[1] else None]

    def flops(self, node):
        n = node.inputs[0].shape[0]
        return 2 * n ** 3 // 3 + 2 * n * node.inputs[1].size


@primitive("inv")
class Inv(Primitive):
    def infer(self, node):
        return [(node.inputs[0].shape, node.inputs[0].dtype)]

    def adjoint(self, node, gs, wants):
        # d_a = -inv(a).T @ g @ inv(a).T
        w = node.outputs[0].T
        return [ops.neg(w @ gs[0] @ w)]

    def flops(self, node):
        return 2 * node.inputs[0].shape[0] ** 3


@primitive("slogdet")
class Slogdet(Primitive):
    """(sign, log|det a|): the sign has derivative 0, log|det a| has inv(a).T."""

    def infer(self, node):
        dt = node.inputs[0].dtype
        return [((), dt), ((), dt)]

    def adjoint(self, node, gs, wants):
        g = gs[1]
        if g is None:
            return [None]
        return [ops.mul(g, inv(node.inputs[0]).T)]

    def flops(self, node):
        return 2 * node.inputs[0].shape[0] ** 3 // 3


@primitive("det")
class Det(Primitive):
    """det a, whose derivative is det(a) * inv(a).T (NaN where a is singular: use slogdet's sign there)."""

    def infer(self, node):
        return [((), node.inputs[0].dtype)]

    def adjoint(self, node, gs, wants):
        return [ops.mul(ops.mul(gs[0], node.outputs[0]), inv(node.inputs[0]).T)]

    def flops(self, node):
        return 2 * node.inputs[0].shape[0] ** 3 // 3


@primitive("cholesky")
class Cholesky(Primitive):
    """L lower-triangular with L @ L.T = a, from a's lower triangle (np.linalg.cholesky)."""

    def infer(self, node):
        return [(node.inputs[0].shape, node.inputs[0].dtype)]

    def adjoint(self, node, gs, wants):
        # Murray (2016): G = L^-T Phi(L^T g) L^-1, Phi the lower triangle with its diagonal halved
        L, g = node.outputs[0], gs[0]
        n, dt = L.shape[0], L.dtype
        half = ops.sub(_tri(n, 0, dt), ops.mul(_eye(n, dt), 0.5))
        phi = ops.mul(L.T @ g, half)
        G = solve(L.T, solve(L.T, phi.T).T)  # L^-T (L^-T phi^T)^T = L^-T phi L^-1
        return [_lower_entries(ops.mul(ops.add(G, G.T), 0.5))]

    def flops(self, node):
        return node.inputs[0].shape[0] ** 3 // 3


@primitive("eigh")
class Eigh(Primitive):
    """(w, v): eigenvalues ascending and orthonormal eigenvectors (columns) of a's lower triangle, as LAPACK
    returns them (np.linalg.eigh). The derivative of the eigenvectors assumes distinct eigenvalues and is
    that of the vectors as returned, whose signs LAPACK chooses: a loss that depends on the signs is not
    differentiable across a sign flip."""

    def infer(self, node):
        a = node.inputs[0]
        return [((a.shape[0],), a.dtype), (a.shape, a.dtype)]

    def adjoint(self, node, gs, wants):
        # G = v (diag(g_w) + F * (v^T g_v)) v^T, F_ij = 1/(w_j - w_i) off the diagonal
        w, v = node.outputs
        g_w, g_v = gs
        n, dt = v.shape[0], v.dtype
        inner = None
        if g_w is not None:
            inner = ops.mul(ops.reshape(g_w, (1, n)), _eye(n, dt))
        if g_v is not None:
            gap = ops.sub(ops.reshape(w, (1, n)), ops.reshape(w, (n, 1)))
            off = ops.sub(1.0, _eye(n, dt))
            F = ops.where(ops.compare("ne", off, 0.0), ops.div(1.0, gap), 0.0)
            part = ops.mul(F, v.T @ g_v)
            inner = part if inner is None else ops.add(inner, part)
        G = v @ inner @ v.T
        return [_lower_entries(ops.mul(ops.add(G, G.T), 0.5))]

    def flops(self, node):
        return 9 * node.inputs[0].shape[0] ** 3


@primitive("pinv")
class Pinv(Primitive):
    """The Moore-Penrose pseudo-inverse (np.linalg.pinv); its derivative (Golub and Pereyra) holds where the
    rank does not change, as for a matrix of full rank."""

    def infer(self, node):
        a = node.inputs[0]
        return [((a.shape[1], a.shape[0]), a.dtype)]

    def adjoint(self, node, gs, wants):
        # d_a = -P^T g P^T + (I - a P) g^T P P^T + P^T P g^T (I - P a)
        a, P, g = node.inputs[0], node.outputs[0], gs[0]
        m, n = a.shape
        left = ops.sub(_eye(m, a.dtype), a @ P)
        right = ops.sub(_eye(n, a.dtype), P @ a)
        first = ops.neg(P.T @ g @ P.T)
        return [ops.add(ops.add(first, left @ g.T @ (P @ P.T)), (P.T @ P) @ g.T @ right)]

    def flops(self, node):
        m, n = node.inputs[0].shape
        return 12 * m * n * min(m, n)


def solve(a, b):
    a, b = ops.as_value(a), ops.as_value(b)
    _square(a, "np.linalg.solve")
    if b.ndim not in (1, 2) or b.shape[0] != a.shape[0]:
        raise ShapeError(f"np.linalg.solve: b of shape {b.shape} does not fit a of shape {a.shape} (a vector "
                         f"of {a.shape[0]} or a matrix of {a.shape[0]} rows)", current_loc())
    return append(Solve, [a, b], {})


def inv(a):
    a = ops.as_value(a)
    _square(a, "np.linalg.inv")
    return append(Inv, [a], {})


def slogdet(a):
    a = ops.as_value(a)
    _square(a, "np.linalg.slogdet")
    return append(Slogdet, [a], {})


def det(a):
    a = ops.as_value(a)
    _square(a, "np.linalg.det")
    return append(Det, [a], {})


def cholesky(a):
    a = ops.as_value(a)
    _square(a, "np.linalg.cholesky")
    return append(Cholesky, [a], {})


def eigh(a, UPLO="L"):
    a = ops.as_value(a)
    _square(a, "np.linalg.eigh")
    if UPLO != "L":
        raise CompileError(f"np.linalg.eigh(..., UPLO={UPLO!r}) is not supported", current_loc(),
                           "Leave UPLO out (the lower triangle), or pass a.T.")
    return append(Eigh, [a], {})


def eigvalsh(a, UPLO="L"):
    return eigh(a, UPLO)[0]


def pinv(a):
    a = ops.as_value(a)
    if a.ndim != 2 or a.dtype.kind != "f":
        raise ShapeError(f"np.linalg.pinv takes one float matrix (2-d), got shape {a.shape}", current_loc())
    return append(Pinv, [a], {})
