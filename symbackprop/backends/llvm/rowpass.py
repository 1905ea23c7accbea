"""X @ w, the elementwise chain on it and X.T @ r in one pass over the rows of X.

Linear and logistic regression compute z = X @ w, the loss and its gradient
r = dL/dz element by element, then d_w = X.T @ r: two passes over X, by far the
largest array. Row by row, z_i = X_i . w, the chain at i, and d_w += r_i X_i
read each row once while it is in cache, so value_and_grad reads X once, as the
forward pass does. Sums of chain values (the loss, the bias gradient) are
accumulated in the same loop.

A pass is taken when, between the two products, every node that reads z (or
what the pass computes) is an elementwise kernel over the rows or a sum of one
to a number; the first node that reads pass values in any other way runs after
the loop, which is placed before it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy
from llvmlite import ir

from ...dtypes import is_half
from ...primitives.elementwise import Kernel
from ...primitives.linalg import MatMul
from ...primitives.reduce import Sum
from ...primitives.shape import SumTo
from . import blas
from .expr import ExprLowering
from .loops import I64, Operand, convert, float_type, llvm_type, load, loop_nest, store


@dataclass
class RowPass:
    first: object                 # z = X @ w
    last: object                  # d_w = X.T @ r
    kernels: list                 # elementwise nodes over the rows, in order
    sums: dict                    # kernel output -> the node summing it to a number
    position: int = 0             # index in the lowering order where the loop runs
    reads: set = field(default_factory=set)    # values computed before the loop that it reads
    stored: set = field(default_factory=set)   # pass values read after the loop

    @property
    def nodes(self):
        return {self.first, self.last, *self.kernels, *self.sums.values()}


def _sums_to_number(node):
    if node.prim is Sum:
        return node.inputs[0].ndim == 1 and not node.attrs["keepdims"]
    return node.prim is SumTo and node.attrs["shape"] == ()


def _row_kernel(node, n, dtype):
    return (node.prim is Kernel and node.attrs["shape"] == (n,)
            and all(v.dtype == dtype for v in node.outputs)
            and all(v.shape in ((n,), ()) and v.dtype.kind == "f" and not is_half(v.dtype) for v in node.inputs))


def find_row_passes(order, virtual_transposes, results):
    """The row passes of a lowering order (see the module docstring)."""
    index = {node: i for i, node in enumerate(order)}
    passes, taken = [], set()
    for last in order:
        if last.prim is not MatMul or last in taken:
            continue
        t, r = last.inputs
        if t not in virtual_transposes or r.ndim != 1:
            continue
        X = t.node.inputs[0]
        n = X.shape[0]
        if X.ndim != 2 or r.shape != (n,) or X.dtype.kind != "f" or last.outputs[0].dtype != X.dtype:
            continue
        first = next((m for m in order[:index[last]] if m.prim is MatMul and m.inputs[0] is X
                      and m.inputs[1].ndim == 1 and m.inputs[1].dtype == X.dtype and m not in taken), None)
        if first is None:
            continue
        found = _plan(first, last, order, index, results, taken)
        if found is not None and _in_time(found, passes, index):
            passes.append(found)
            taken |= found.nodes
    return passes


def _in_time(rp, passes, index):
    """Whether `rp` can join `passes`: each loop runs after every loop whose values it reads, and before
    every loop reading its own values (two products of one vector, A @ v and B @ v, whose row chains
    meet give two candidate passes, the second reading values the first computes)."""
    def when(p, k):  # the loops at a position run in the list's order, before the node at that position
        return (p.position, k)

    made_by = {v: (p, k) for k, p in enumerate(passes) for n in p.nodes for v in n.outputs}
    mine = {v for n in rp.nodes for v in n.outputs}
    me = when(rp, len(passes))
    for v in rp.reads:
        if v in made_by and not when(*made_by[v]) < me:
            return False
    return all(me < when(p, k) for k, p in enumerate(passes) if p.reads & mine)


def _plan(first, last, order, index, results, taken=frozenset()):
    X = first.inputs[0]
    n, dtype = X.shape[0], X.dtype
    inside = {first.outputs[0]}        # values the loop computes
    after = set()                      # values computed after the loop (they read pass values)
    kernels, sums, position = [], {}, index[last]
    totals = set()                     # the sums' outputs: complete only after the loop
    for node in order[index[first] + 1:index[last]]:
        reads = set(node.inputs)
        if node in taken:
            # computed in another row pass's loop: never in this one too (it would be lowered twice,
            # each loop reading values the other keeps in its registers)
            if reads & (inside | after):
                position = min(position, index[node])
                after.update(node.outputs)
        elif reads & after:
            after.update(node.outputs)
        elif reads & inside:
            # a row kernel runs in the loop, even one after a node the loop must precede; not one reading
            # a sum the loop accumulates
            if _row_kernel(node, n, dtype) and not reads & totals:
                kernels.append(node)
                inside.update(node.outputs)
            elif _sums_to_number(node) and node.inputs[0] in inside and node.inputs[0].shape == (n,) \
                    and node.inputs[0] not in sums and node.inputs[0].node is not first:
                sums[node.inputs[0]] = node
                inside.update(node.outputs)
                totals.update(node.outputs)
            else:
                position = min(position, index[node])
                after.update(node.outputs)
    r = last.inputs[1]
    if r not in inside or r is first.outputs[0]:
        return None
    rp = RowPass(first, last, kernels, sums, position)
    w = first.inputs[1]
    own = rp.nodes
    for node in [first, *kernels]:
        for v in node.inputs:
            if v not in inside:
                if v.node is not None and index.get(v.node, -1) >= position:
                    return None  # computed after the place the loop must run
                rp.reads.add(v)
    rp.reads |= {X, w}
    # pass values read elsewhere (or returned) are written to their buffers
    for node in order:
        if node not in own:
            rp.stored |= {v for v in node.inputs if v in inside and v.node is not None and v.node.prim is Kernel}
    rp.stored |= {v for v in results if v in inside and v.node is not None and v.node.prim is Kernel}
    if first.outputs[0] in {v for node in order if node not in own for v in node.inputs} | set(results):
        return None  # z itself read elsewhere: leave it to the product
    return rp


def _in_order(values, order):
    """`values` in the order their nodes are lowered (the IR text must not depend on set order)."""
    rank = {}
    for i, node in enumerate(order):
        for k, v in enumerate(node.outputs):
            rank[v] = (i, k)
    return sorted(values, key=lambda v: rank.get(v, (-1, 0)))


def lower_row_pass(L, rp):
    """The loop, over blocks of rows that stay in cache: z for the block (one dot per row), the chain
    over the block (a loop the vectoriser takes, transcendentals included), then d_w += r_i X_i."""
    X, w = rp.first.inputs
    n, d = X.shape
    ty = llvm_type(X.dtype)
    dtype = X.dtype.name
    stored = _in_order(rp.stored, L.order)
    for v in stored:
        L.define(v)
    for s in rp.sums.values():
        L.define(s.outputs[0])
        L.fill(s.outputs[0], 0.0)
    out = rp.last.outputs[0]
    L.define(out)
    L.fill(out, 0.0)
    block = int(max(8, min(n, BLOCK_BYTES // (d * X.dtype.itemsize))))
    acc = L.allocas.alloca(ty)
    z_tmp = L.allocas.alloca(ty, size=block)
    r = rp.last.inputs[1]
    r_tmp = None if r in rp.stored else L.allocas.alloca(ty, size=block)
    vectors = []  # (n,) values the chain reads or stores, in a fixed order
    for node in rp.kernels:
        for v in node.inputs + node.outputs:
            if v.shape == (n,) and v not in vectors and (v in rp.stored or v in L.buffers):
                vectors.append(v)

    def rows(bb, start, count):
        """The pass over rows start .. start + count (start an i64 value, count a number)."""
        x_block = bb.gep(L.buffer(X), [bb.mul(start, ir.Constant(I64, d))], source_etype=ty)
        at = {v: Operand(bb.gep(L.buffer(v), [start], source_etype=llvm_type(v.dtype)), llvm_type(v.dtype), (1,))
              for v in vectors}
        x_rows = Operand(x_block, ty, (d, 1))
        weights = Operand(L.buffer(w), ty, (0, 1))
        z_op = Operand(z_tmp, ty, (1, 0))

        def dot(bi, o):
            value = bi.fmul(load(bi, x_rows, o[0]), load(bi, weights, o[1]))
            store(bi, bi.fadd(load(bi, z_op, o[2]), value, flags=("reassoc",)), z_op, o[2])

        if L.blas:  # the block's dots as one BLAS matrix-vector product (row dots vectorise poorly)
            blas.emit_cblas_gemm(bb, x_block, L.buffer(w), z_tmp, count, d, 1, dtype)
        else:
            loop_nest(bb, (count,), [Operand(z_tmp, ty, (1,))],
                      lambda bi, o: store(bi, ir.Constant(ty, 0.0), Operand(z_tmp, ty, (1,)), o[0]))
            loop_nest(bb, (count, d), [x_rows, weights, z_op], dot)
        r_op = at[r] if r_tmp is None else Operand(r_tmp, ty, (1,))
        chain_ops = [Operand(z_tmp, ty, (1,)), r_op] + [at[v] for v in vectors]

        def chain(bi, o):
            known = {rp.first.outputs[0]: load(bi, chain_ops[0], o[0])}
            offset = dict(zip(vectors, o[2:]))
            for node in rp.kernels:
                ftype = float_type([v.dtype for v in node.outputs] + [v.dtype for v in node.inputs if not v.weak])
                lower = ExprLowering(bi, ftype, {}, where=f"kernel at {node.loc.short()}")
                for i, v in enumerate(node.inputs):
                    if v in known:
                        value = known[v]
                    elif v.shape == ():
                        value = bi.load(L.buffer(v), typ=llvm_type(v.dtype))
                    else:
                        value = load(bi, at[v], offset[v])
                    lower.memo[sympy.Symbol(f"a{i}", real=True)] = lower.as_float(value)
                for t, e in node.attrs["program"]:
                    lower.memo[t] = lower.value(e)
                for e, v in zip(node.attrs["outs"], node.outputs):
                    value = convert(lower, lower.value(e), v.dtype)
                    known[v] = value
                    if v in rp.stored:
                        store(bi, value, at[v], offset[v])
                    total = rp.sums.get(v)
                    if total is not None:
                        p = L.buffer(total.outputs[0])
                        bi.store(bi.fadd(bi.load(p, typ=ty), value, flags=("reassoc",)), p)
            if r_tmp is not None:
                store(bi, known[r], chain_ops[1], o[1])

        loop_nest(bb, (count,), chain_ops, chain)
        d_w = Operand(L.buffer(out), ty, (0, 1))
        r_rows = Operand(r_op.pointer, ty, (1, 0))

        def accumulate(bi, o):
            value = bi.fmul(load(bi, r_rows, o[1]), load(bi, x_rows, o[0]))
            store(bi, bi.fadd(load(bi, d_w, o[2]), value, flags=("reassoc",)), d_w, o[2])

        if L.blas:  # d_w += X_block.T @ r_block while the block is in cache (own loops measured 101 vs 79 us)
            blas.emit_cblas_gemm(bb, x_block, r_op.pointer, L.buffer(out), d, count, 1, dtype, trans_a=True,
                                 accumulate=True)
        else:
            loop_nest(bb, (count, d), [x_rows, r_rows, d_w], accumulate)

    full, rest = divmod(n, block)
    if full:
        loop_nest(L.b, (full,), [Operand(acc, ty, (block,))], lambda bb, o: rows(bb, o[0], block))
    if rest:
        rows(L.b, ir.Constant(I64, full * block), rest)


#: rows of X per block: a block is read twice (its dots, then d_w += r_i X_i), so it should stay in L2
#: (W3, value_and_grad: 32 KiB blocks 86 us, 64 KiB 82, 128 KiB 79, 256 KiB 80)
BLOCK_BYTES = 128 * 1024
