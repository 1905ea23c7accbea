"""The optimised IR as one LLVM function, one lowering rule per primitive.

The function has the C entry point of the exported library:

    int <model>_value_and_grad(const T* p0, ..., T* value, T* g0, ...)

one pointer per array or float parameter (C-contiguous, the specialised shape),
then the loss, then one output per gradient in `wrt` order; it returns 0.
Every value lives in a C-contiguous buffer: parameters and outputs in the
caller's memory, 0-d temporaries in allocas (which LLVM keeps in registers),
the others malloc'ed and freed after their last use. Reshapes and leading-index
views (Ws[i]) are pointer arithmetic, transposes feeding a product are BLAS
flags; everything else is a loop nest (loops.py).
"""
from __future__ import annotations

import numpy as np
import sympy
from llvmlite import ir

from ...dtypes import is_half
from ...errors import CompileError
from ...ir import Value, _freeze
from ...primitives.composite import LogSoftmax, LogSumExp, Softmax
from ...primitives.control import Tape
from ...primitives.elementwise import Constant, Fill, Kernel
from ...primitives.gather import AddAt, Argsort, Gather, ScatterAddAt, geometry, is_array_entry
from ...primitives.index import Index, ScatterAdd, SetIndex
from ...primitives.linalg import Cholesky, Det, Eigh, Inv, MatMul, Outer, Pinv, Slogdet, Solve
from ...primitives.reduce import Max, Min, Sum
from ...primitives.shape import BroadcastTo, Concatenate, Copy, Reshape, SumTo, Transpose
from . import blas_calls, vecmath
from .expr import ExprLowering, intrinsic
from . import lapack
from .loops import (I8, I64, Operand, broadcast_strides, compute_type, contiguous_strides, convert, float_type,
                    half_of, llvm_type, load, loop_nest, store)
from .rowpass import find_row_passes, lower_row_pass
from .tapes import define_tape, free_tape

import os

I32 = ir.IntType(32)
#: tests set this: freed buffers are first filled with NaN bytes, so a use after free shows as NaN
POISON_FREED = bool(os.environ.get("SYMBACKPROP_POISON_FREED"))
PTR = ir.PointerType()
#: primitive class -> lower(L, node); primitives are registered as instances, so the key is type(prim)
LOWERINGS: dict = {}


def lowers(*prims):
    """Register the decorated function as the lowering of each of `prims` (primitive instances)."""
    def register(fn):
        for prim in prims:
            LOWERINGS[type(prim)] = fn
        return fn
    return register


class Lowering:
    """Builds the module for one specialisation."""

    def __init__(self, compiled, symbol, blas=None, updates=(), update_nodes=frozenset(), module=None):
        self.compiled = compiled
        graph = compiled.graph
        self.graph = graph
        # a train step's updates write into their targets (parameters, optimizer state) last, in place
        self.update_nodes = set(update_nodes)
        self.order = [n for n in graph.nodes if n not in self.update_nodes] + \
                     [n for n in graph.nodes if n in self.update_nodes]
        self.blas = blas                      # whether products may call NumPy's BLAS (not in exports)
        # a module of its own, or one shared with another function (a train step's accumulating call)
        self.module = ir.Module(name=symbol) if module is None else module
        params = graph.params
        outputs = [graph.result] + list(compiled.grads) + list(graph.aux)  # aux last (has_aux=True)
        ftype = ir.FunctionType(I32, [PTR] * (len(params) + len(outputs)))
        self.function = ir.Function(self.module, ftype, symbol)
        for a in self.function.args[len(params):]:
            a.add_attribute("noalias")
        entry = self.function.append_basic_block("entry")
        self.allocas = ir.IRBuilder(entry)
        body = self.function.append_basic_block("body")
        self.b = ir.IRBuilder(body)
        self.buffers: dict = {}
        self.owned: list = []
        self.tapes: list = []  # the tapes of the scope being lowered (regions.py), freed when it ends
        self.view_roots: dict = {}
        self.outlining = False
        self.outlined: dict = {}
        for v, a in zip(params, self.function.args):
            self.buffers[v] = a
        self.out_args = list(zip(outputs, self.function.args[len(params):]))
        self.output_values = set(outputs)
        self.direct = {}
        for v, a in self.out_args:
            # compute an output straight into the caller's memory when nothing else claims it
            if v.node is not None and v not in self.direct and v not in params \
                    and v.node.prim is not Reshape:  # a reshape is its input's buffer
                self.direct[v] = a
        self.copy_back = []
        #: updates whose new value has another dtype than their target (a float64 scalar in a float32 model's
        #: loss makes the update float64): converted element by element into the target, never written in place
        self.convert_back = []
        for target, new in updates:
            if new.dtype != target.dtype:
                self.convert_back.append((new, self.buffers[target], target.dtype))
            elif new.node is not None and new.node in self.update_nodes and new.node.prim is Kernel \
                    and len(new.node.outputs) == 1 and new not in self.direct:
                self.direct[new] = self.buffers[target]
            else:
                self.copy_back.append((new, self.buffers[target]))
        self.last_use = {}
        for i, node in enumerate(self.order):
            for v in node.inputs:
                self.last_use[v] = i
        for new, *_ in self.copy_back + self.convert_back:
            self.last_use[new] = len(self.order)
        self.virtual_transposes = _virtual_transposes(graph)
        self.fused_reductions = {v: r for v, r in _fused_reductions(graph, {v for v, _ in self.out_args}).items()
                                 if v.node not in self.update_nodes and r not in self.update_nodes}
        self.reductions_done = {r for r in self.fused_reductions.values()}
        for v in self.virtual_transposes:  # the product reads the source through the transpose
            src = v.node.inputs[0]
            self.last_use[src] = max(self.last_use.get(src, -1), self.last_use.get(v, -1))
        # X @ w, its elementwise chain and X.T @ r in one loop over the rows of X (rowpass.py)
        self.row_passes = [rp for rp in find_row_passes(self.order, self.virtual_transposes,
                                                        [v for v, _ in self.out_args])
                           if not rp.nodes & self.update_nodes]
        self.row_pass_nodes = set().union(*(rp.nodes for rp in self.row_passes))
        for rp in self.row_passes:
            for v in rp.reads:
                self.last_use[v] = max(self.last_use.get(v, -1), rp.position)
        # a kernel the row pass computes has no loop of its own for a reduction to join: the reduction
        # reads the values the pass stores, by its own rule
        self.fused_reductions = {v: r for v, r in self.fused_reductions.items() if v.node not in self.row_pass_nodes}
        self.reductions_done = set(self.fused_reductions.values())
        self.parts = self._parts_in_place()

    def _parts_in_place(self):
        """Products written straight into their row of a gradient assembled from parts (d_Ws[i] of a loop
        over layers): part -> (the scatter-add, its element offset). Else each part is a buffer of its own
        until the scatter-add at the end copies it in: the whole gradient twice."""
        uses: dict = {}
        for n in self.order:
            for v in n.inputs:
                uses[v] = uses.get(v, 0) + 1
        parts = {}
        for s in self.order:
            out = s.outputs[0]
            if s.prim is not ScatterAdd or out not in self.direct or s in self.update_nodes \
                    or not s.prim.disjoint_rows(s):
                continue
            row = int(np.prod(out.shape[1:], dtype=np.int64))
            for key, g in zip(s.attrs["indexes"], s.inputs):
                p = g.node
                if (p is not None and p.prim is MatMul and p not in self.row_pass_nodes and uses.get(g) == 1
                        and g not in self.output_values and g not in self.direct and g.dtype == out.dtype
                        and g.shape == out.shape[1:] and g.size > 16 and g not in parts):
                    parts[g] = (s, key[0] * row)
        return parts

    # ---- buffers ----------------------------------------------------------------
    def buffer(self, v):
        if v not in self.buffers:
            raise CompileError(f"internal: {v!r} used before it was computed (LLVM lowering)")
        return self.buffers[v]

    def operand(self, v, strides=None, offset=0):
        return Operand(self.buffer(v), llvm_type(v.dtype), strides or contiguous_strides(v.shape), offset,
                       half_of(v.dtype))

    def define(self, v):
        """A fresh buffer for value `v`."""
        if self.outlining:  # inside an outlined loop function: the caller allocated it
            return self.buffers[v]
        if isinstance(v, Tape):
            return define_tape(self, v)
        if v in self.direct:
            self.buffers[v] = self.direct[v]
            return self.buffers[v]
        ty = llvm_type(v.dtype)
        if v in self.parts:  # its row of the gradient it is a part of, in the caller's memory
            s, offset = self.parts[v]
            self.buffers[v] = self.allocas.gep(self.direct[s.outputs[0]], [ir.Constant(I64, offset)],
                                               source_etype=ty)
            return self.buffers[v]
        if v.shape == () or v.size <= 16:
            ptr = self.allocas.alloca(ty, size=max(v.size, 1))
        else:
            malloc = self._libc("malloc", PTR, [I64])
            ptr = self.b.call(malloc, [ir.Constant(I64, v.size * v.dtype.itemsize)])
            self.owned.append((v, ptr))
        self.buffers[v] = ptr
        return ptr

    def alias(self, v, pointer, source=None):
        self.buffers[v] = pointer
        if source is not None:
            # a view (x[0] of a temporary) keeps the buffer it points into alive until its own last read
            root = self.view_roots.get(source, source)
            self.view_roots[v] = root
            end = len(self.order) if v in {u for u, _ in self.out_args} else self.last_use.get(v, -1)
            self.last_use[root] = max(self.last_use.get(root, -1), end)

    def _libc(self, name, ret, args):
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, args), name)
        return fn

    def memcpy(self, dst, src, nbytes):
        fn = self._libc("memcpy", PTR, [PTR, PTR, I64])
        self.b.call(fn, [dst, src, ir.Constant(I64, nbytes)])

    def fill(self, v, value):
        ty = compute_type(v.dtype)
        op = self.operand(v)
        const = ir.Constant(ty, value if isinstance(ty, (ir.DoubleType, ir.FloatType)) else int(value))
        loop_nest(self.b, v.shape, [op], lambda b, offs: store(b, const, op, offs[0]))

    # ---- the function -------------------------------------------------------------
    def lower_nodes(self):
        """Lower self.order in the current block, freeing each buffer after its last read."""
        for i, node in enumerate(self.order):
            for rp in self.row_passes:
                if rp.position == i:
                    lower_row_pass(self, rp)
            if node in self.row_pass_nodes:
                self._free_dead(i)
                continue
            rule = LOWERINGS.get(type(node.prim))
            if rule is None:
                raise CompileError(f"the LLVM backend cannot lower `{node.prim.name}`", node.loc)
            if node.outputs[0] in self.virtual_transposes or node in self.reductions_done:
                pass  # read by the products as a transpose flag, or computed by its producer's loop
            elif node in self.update_nodes:
                rule(self, node)  # reads and writes its target: not a function of distinct (noalias) buffers
            elif type(node.prim) in OUTLINED and max((v.size for v in node.outputs), default=1) > 1 \
                    and not any(self.parts.get(g, (None,))[0] is node for g in node.inputs):  # not shareable
                self.outline(rule, node)
            else:
                rule(self, node)
            self._free_dead(i)

    def run(self):
        self.lower_nodes()
        for v, a in self.out_args + self.copy_back:
            src = self.buffer(v)
            if self.buffers.get(v) is not a:
                self.memcpy(a, src, max(v.size, 1) * v.dtype.itemsize)
        for v, a, dtype in self.convert_back:
            src = Operand(self.buffer(v), llvm_type(v.dtype), (1,), 0, half_of(v.dtype))
            dst = Operand(a, llvm_type(dtype), (1,), 0, half_of(dtype))
            ty = compute_type(dtype)
            loop_nest(self.b, (max(v.size, 1),), [src, dst],
                      lambda b, o: store(b, _cast(b, load(b, src, o[0]), ty), dst, o[1]))
        for v, ptr in self.owned:
            self.release(v, ptr)
        for ptr in self.tapes:
            free_tape(self, ptr)
        self.owned, self.tapes = [], []
        self.b.ret(ir.Constant(I32, 0))
        self.allocas.branch(self.b.block.parent.basic_blocks[1])
        return str(self.module)

    def outline(self, rule, node):
        """Lower `node` into a function of its buffers, shared by every node of the same shape.

        The same layer repeated (a loop over stacked weights) then costs LLVM one loop, not n.
        """
        outputs = []
        for v in node.outputs:
            reduction = self.fused_reductions.get(v)
            outputs.append(reduction.outputs[0] if reduction is not None else v)
            self.define(outputs[-1])
        fused = tuple(reduction_plan(self.fused_reductions[v]) if v in self.fused_reductions else None
                      for v in node.outputs)
        values = list(node.inputs) + outputs
        # the body reads a value passed twice (concatenate([w, v, w])) through one argument: only nodes
        # that repeat the same inputs in the same places can share it
        repeats = tuple(values.index(v) for v in values)
        key = (type(node.prim), _freeze(node.attrs), tuple((v.shape, str(v.dtype)) for v in node.inputs),
               tuple((v.shape, str(v.dtype)) for v in outputs), fused, repeats)
        fn = self.outlined.get(key)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [PTR] * len(values)),
                             f"{self.function.name}_{node.prim.name}{len(self.outlined)}")
            fn.linkage = "internal"
            fn.attributes.add("noinline")
            for a in fn.args:  # outputs are fresh buffers; inputs are only read
                a.add_attribute("noalias")
            saved = self.b, self.allocas, self.buffers, self.outlining
            self.allocas = ir.IRBuilder(fn.append_basic_block("entry"))  # its own slots (blocked sums)
            self.b = ir.IRBuilder(fn.append_basic_block("body"))
            self.buffers = dict(zip(values, fn.args))
            self.outlining = True
            try:
                rule(self, node)
                self.b.ret_void()
                self.allocas.branch(fn.basic_blocks[1])
            finally:
                self.b, self.allocas, self.buffers, self.outlining = saved
            self.outlined[key] = fn
        self.b.call(fn, [self.buffer(v) for v in values])

    def _free_dead(self, i):
        if not self.owned:
            return
        keep = self.output_values
        sharing: dict = {}  # buffer -> every value living in it (views and aliases included)
        for u, p in self.buffers.items():
            sharing.setdefault(id(p), []).append(u)
        alive = []
        for v, ptr in self.owned:
            roots = sharing.get(id(ptr), [])
            if all(self.last_use.get(u, -1) <= i for u in roots) and not any(u in keep for u in roots):
                self.release(v, ptr)
            else:
                alive.append((v, ptr))
        self.owned = alive

    def release(self, v, ptr):
        if POISON_FREED:
            memset = self._libc("memset", PTR, [PTR, I32, I64])
            self.b.call(memset, [ptr, ir.Constant(I32, 0xFF), ir.Constant(I64, v.size * v.dtype.itemsize)])
        self.b.call(self._libc("free", ir.VoidType(), [PTR]), [ptr])


#: loop primitives lowered into shared functions (matmul is a BLAS call; views are pointer arithmetic)
OUTLINED = {type(p) for p in (Kernel, Sum, Max, Min, SumTo, Transpose, BroadcastTo, ScatterAdd, Concatenate,
                             Outer, LogSumExp, LogSoftmax, Softmax, Fill)}


def _fused_reductions(graph, results):
    """Kernel outputs read only by one reduction: the kernel's loop accumulates them directly."""
    users = graph.users()
    fused = {}
    for node in graph.nodes:
        if node.prim in (Sum, Max, Min, SumTo):
            v = node.inputs[0]
            if v.node is not None and v.node.prim is Kernel and users.get(v) == [node] \
                    and v not in results and v.shape == v.node.attrs["shape"]:
                fused[v] = node
    return fused


def _virtual_transposes(graph):
    """2-d transposes read only by (unbatched) matrix products: a BLAS flag, never materialised."""
    users = graph.users()
    out = set()
    for node in graph.nodes:
        if node.prim is Transpose and node.inputs[0].ndim == 2:
            us = users.get(node.outputs[0], [])
            if us and all(u.prim is MatMul and u.inputs[0].ndim <= 2 and u.inputs[1].ndim <= 2 for u in us):
                out.add(node.outputs[0])
    return out


# ---- elementwise ------------------------------------------------------------------

@lowers(Kernel)
def lower_kernel(L, node):
    """One loop computing every output; an output only a reduction reads is accumulated, never stored."""
    shape = node.attrs["shape"]
    ins = [L.operand(v, broadcast_strides(v.shape, shape)) for v in node.inputs]
    outs = []
    for v in node.outputs:
        reduction = L.fused_reductions.get(v)
        if reduction is not None:
            kind, axes = reduction_plan(reduction)
            out = reduction.outputs[0]
            L.define(out)
            outs.append(_accumulator(L, shape, out, axes, kind))
        else:
            L.define(v)
            outs.append((L.operand(v), None))
    ftype = float_type([v.dtype for v in node.outputs] + [v.dtype for v in node.inputs if not v.weak])
    program, exprs = node.attrs["program"], node.attrs["outs"]
    def body(b, offs):
        values = {sympy.Symbol(f"a{i}", real=True): load(b, op, o) for i, (op, o) in enumerate(zip(ins, offs))}
        lower = ExprLowering(b, ftype, {}, where=f"kernel at {node.loc.short()}")
        for s, v in values.items():
            lower.memo[s] = v if v.type == ftype or isinstance(v.type, ir.IntType) and v.type.width > 8 \
                else (lower.as_bool(v) if v.type == I8 else lower.as_float(v))
        for t, e in program:
            lower.memo[t] = lower.value(e)
        for e, v, (op, accumulate), o in zip(exprs, node.outputs, outs, offs[len(ins):]):
            value = convert(lower, lower.value(e), v.dtype)
            if accumulate is None:
                store(b, value, op, o)
            else:
                accumulate(b, value, o)

    sums = [len(ins) + k for k, v in enumerate(node.outputs)
            if v in L.fused_reductions and reduction_plan(L.fused_reductions[v])[0] == "sum"]
    loop_nest(L.b, shape, ins + [op for op, _ in outs], body, sums=sums, allocas=L.allocas)


@lowers(Fill)
def lower_fill(L, node):
    v = node.outputs[0]
    L.define(v)
    L.fill(v, node.attrs["value"])


@lowers(Constant)
def lower_constant(L, node):
    """A private constant global holding the values, copied into the output's buffer."""
    v = node.outputs[0]
    L.define(v)
    ty = llvm_type(v.dtype)
    data = ir.ArrayType(ty, len(node.attrs["values"]))
    g = ir.GlobalVariable(L.module, data, L.module.get_unique_name("constant"))
    g.global_constant = True
    g.linkage = "private"
    g.initializer = ir.Constant(data, [ir.Constant(ty, x) for x in node.attrs["values"]])
    L.memcpy(L.buffer(v), g, v.size * v.dtype.itemsize)


# ---- reductions ---------------------------------------------------------------------

def reduction_plan(node):
    """(kind, axes) of a reduction node over its input's shape."""
    if node.prim is SumTo:
        x, shape = node.inputs[0], node.attrs["shape"]
        lead = x.ndim - len(shape)
        axes = set(range(lead)) | {lead + i for i, s in enumerate(shape) if s == 1 and x.shape[lead + i] != 1}
        return "sum", tuple(sorted(axes))
    return node.prim.method, node.attrs["axes"]


def _accumulator(L, shape, out, axes, kind):
    """Initialise `out` and return (operand, accumulate(builder, value, offset)) over `shape`."""
    keep_shape = tuple(1 if i in axes else n for i, n in enumerate(shape))
    out_strides = broadcast_strides(keep_shape, shape)
    out_strides = tuple(0 if i in axes else s for i, s in enumerate(out_strides))
    ty = llvm_type(out.dtype)
    if out.dtype.kind in "fc" or is_half(out.dtype):
        init = {"sum": 0.0, "max": float("-inf"), "min": float("inf")}[kind]
    else:  # booleans (np.any is a max, np.all a min) and integers start from their own extremes
        info = np.iinfo(np.uint8 if out.dtype.kind == "b" else out.dtype)
        init = {"sum": 0, "max": info.min, "min": 1 if out.dtype.kind == "b" else info.max}[kind]
    L.fill(out, init)
    dst = Operand(L.buffer(out), ty, out_strides)

    def accumulate(b, value, offset):
        value = _cast(b, value, ty)
        acc = load(b, dst, offset)
        if kind == "sum":
            # reassociation lets LLVM keep several partial sums in vector lanes, as NumPy's pairwise sum does
            new = b.add(acc, value) if isinstance(ty, ir.IntType) else b.fadd(acc, value, flags=("reassoc",))
        elif isinstance(ty, ir.IntType):
            signed = out.dtype.kind == "i"
            compare = b.icmp_signed if signed else b.icmp_unsigned
            new = b.select(compare(">" if kind == "max" else "<", value, acc), value, acc)
        else:
            new = intrinsic(b, "maximum" if kind == "max" else "minimum", ty, [acc, value])
        store(b, new, dst, offset)

    return dst, accumulate


def _reduce_into(L, x, out, axes, kind):
    """out (keepdims layout) = reduce(x) over axes; out's buffer already defined."""
    dst, accumulate = _accumulator(L, x.shape, out, axes, kind)
    src = L.operand(x)
    loop_nest(L.b, x.shape, [src, dst], lambda b, offs: accumulate(b, load(b, src, offs[0]), offs[1]),
              sums=[1] if kind == "sum" else [], allocas=L.allocas)


@lowers(Sum, Max, Min)
def lower_reduction(L, node):
    out = node.outputs[0]
    L.define(out)
    _reduce_into(L, node.inputs[0], out, node.attrs["axes"], node.prim.method)


@lowers(SumTo)
def lower_sum_to(L, node):
    out = node.outputs[0]
    L.define(out)
    _reduce_into(L, node.inputs[0], out, reduction_plan(node)[1], "sum")


# ---- shapes ---------------------------------------------------------------------------

@lowers(Reshape)
def lower_reshape(L, node):
    L.alias(node.outputs[0], L.buffer(node.inputs[0]), source=node.inputs[0])


@lowers(Transpose)
def lower_transpose(L, node):
    x, out = node.inputs[0], node.outputs[0]
    perm = node.attrs["perm"]
    src_strides = contiguous_strides(x.shape)
    src = L.operand(x, tuple(src_strides[p] for p in perm))
    L.define(out)
    dst = L.operand(out)
    loop_nest(L.b, out.shape, [src, dst], lambda b, o: store(b, load(b, src, o[0]), dst, o[1]))


@lowers(Copy)
def lower_copy(L, node):
    x, out = node.inputs[0], node.outputs[0]
    L.define(out)
    L.memcpy(L.buffer(out), L.buffer(x), max(x.size, 1) * x.dtype.itemsize)


@lowers(BroadcastTo)
def lower_broadcast_to(L, node):
    x, out = node.inputs[0], node.outputs[0]
    src = L.operand(x, broadcast_strides(x.shape, out.shape))
    L.define(out)
    dst = L.operand(out)
    loop_nest(L.b, out.shape, [src, dst], lambda b, o: store(b, load(b, src, o[0]), dst, o[1]))


def _index_geometry(shape, key):
    """(offset, strides per output dim) of basic index `key` into a C-contiguous array of `shape`."""
    own = contiguous_strides(shape)
    offset, strides, dim = 0, [], 0
    for k in key:
        if k is None:
            strides.append(0)
            continue
        if isinstance(k, slice):
            start, _, step = k.indices(shape[dim])
            offset += start * own[dim]
            strides.append(own[dim] * step)
        else:
            offset += k * own[dim]
        dim += 1
    strides.extend(own[dim:])
    return offset, tuple(strides)


def _is_leading_view(key):
    seen_slice = False
    for k in key:
        if k is None:
            return False
        if isinstance(k, slice):
            if k != slice(None):
                return False
            seen_slice = True
        elif seen_slice:
            return False
    return True


@lowers(Index)
def lower_index(L, node):
    x, out = node.inputs[0], node.outputs[0]
    key = node.attrs["index"]
    offset, strides = _index_geometry(x.shape, key)
    if _is_leading_view(key):  # Ws[i]: a pointer into Ws, no copy
        ty = llvm_type(x.dtype)
        L.alias(out, L.b.gep(L.buffer(x), [ir.Constant(I64, offset)], inbounds=True, source_etype=ty), source=x)
        return
    src = L.operand(x, strides, offset)
    L.define(out)
    dst = L.operand(out)
    loop_nest(L.b, out.shape, [src, dst], lambda b, o: store(b, load(b, src, o[0]), dst, o[1]))


@lowers(ScatterAdd)
def lower_scatter_add(L, node):
    out = node.outputs[0]
    L.define(out)
    ty = llvm_type(out.dtype)
    in_place = [g for g in node.inputs if L.parts.get(g, (None,))[0] is node]
    if not in_place:
        L.fill(out, 0.0)
    else:  # the rows no part wrote in place start at zero
        written = {L.parts[g][1] for g in in_place}
        row = int(np.prod(out.shape[1:], dtype=np.int64))
        zero = ir.Constant(ty, 0.0)
        for i in range(out.shape[0]):
            if i * row not in written:
                dst = Operand(L.buffer(out), ty, contiguous_strides(out.shape[1:]), i * row)
                loop_nest(L.b, out.shape[1:], [dst], lambda b, o, dst=dst: store(b, zero, dst, o[0]))
    for key, g in zip(node.attrs["indexes"], node.inputs):
        if g in in_place:
            continue
        offset, strides = _index_geometry(out.shape, key)
        dst = Operand(L.buffer(out), ty, strides, offset)
        src = L.operand(g)

        def body(b, o, src=src, dst=dst):
            store(b, b.fadd(load(b, dst, o[1]), _cast(b, load(b, src, o[0]), ty)), dst, o[1])

        loop_nest(L.b, g.shape, [src, dst], body)


def _gather_plan(L, x_shape, x_buffer, ty, key, idx, out_shape):
    """The x operand (its slices' strides over the result's dims) and, per index array, its operand and
    (x's stride, the axis's size) for the offset each index adds."""
    own = contiguous_strides(x_shape)
    _, bshape, first = geometry(x_shape, key, [i.shape for i in idx])
    nb = len(bshape)
    offset, sliced, arrays = 0, [], []
    for d, (k, n) in enumerate(zip(key, x_shape)):
        if is_array_entry(k):
            arrays.append((k[1], own[d], n))
        elif isinstance(k, slice):
            start, _, step = k.indices(n)
            offset += start * own[d]
            sliced.append(own[d] * step)
        else:
            offset += k * own[d]
    x_op = Operand(x_buffer, ty, tuple(sliced[:first]) + (0,) * nb + tuple(sliced[first:]), offset)
    rest = len(out_shape) - first - nb
    idx_ops = [L.operand(v, (0,) * first + broadcast_strides(v.shape, bshape) + (0,) * rest) for v in idx]
    return x_op, idx_ops, arrays


def _gathered_offset(b, base, idx_ops, arrays, offs):
    """x's element offset and whether every index is in bounds (NumPy's negative indices wrap)."""
    off, ok = base, ir.Constant(ir.IntType(1), 1)
    for k, stride, n in arrays:
        i = load(b, idx_ops[k], offs[k])
        if i.type.width < 64:
            i = b.sext(i, I64)
        i = b.select(b.icmp_signed("<", i, ir.Constant(I64, 0)), b.add(i, ir.Constant(I64, n)), i)
        inside = b.icmp_unsigned("<", i, ir.Constant(I64, n))
        ok = b.and_(ok, inside)
        off = b.add(off, b.mul(b.select(inside, i, ir.Constant(I64, 0)), ir.Constant(I64, stride)))
    return off, ok


@lowers(Gather)
def lower_gather(L, node):
    """out[j] = x[offset(j)]; an index out of bounds gives NaN (the NumPy backend raises IndexError)."""
    x, idx, out = node.inputs[0], node.inputs[1:], node.outputs[0]
    ty = llvm_type(out.dtype)
    L.define(out)
    x_op, idx_ops, arrays = _gather_plan(L, x.shape, L.buffer(x), ty, node.attrs["key"], idx, out.shape)
    dst = L.operand(out)

    def body(b, o):
        off, ok = _gathered_offset(b, o[0], idx_ops, arrays, o[1:-1])
        value = b.load(b.gep(x_op.pointer, [off], inbounds=True, source_etype=ty), typ=ty)
        missing = ir.Constant(ty, float("nan") if out.dtype.kind == "f" else 0)
        store(b, b.select(ok, value, missing), dst, o[-1])

    loop_nest(L.b, out.shape, [x_op, *idx_ops, dst], body)


@lowers(ScatterAddAt, AddAt)
def lower_scatter_add_at(L, node):
    """out = 0 (or the base, for add_at), then out[offset(j)] += g[j] element by element (repeated
    indices add up)."""
    out = node.outputs[0]
    ty = llvm_type(out.dtype)
    L.define(out)
    if node.prim is AddAt:
        base, g, idx = node.inputs[0], node.inputs[1], node.inputs[2:]
        src0, dst0 = L.operand(base), L.operand(out)
        loop_nest(L.b, out.shape, [src0, dst0], lambda b, o: store(b, load(b, src0, o[0]), dst0, o[1]))
    else:
        g, idx = node.inputs[0], node.inputs[1:]
        L.fill(out, 0.0)
    x_op, idx_ops, arrays = _gather_plan(L, out.shape, L.buffer(out), ty, node.attrs["key"], idx, g.shape)
    src = L.operand(g)

    def body(b, o):
        off, ok = _gathered_offset(b, o[0], idx_ops, arrays, o[1:-1])
        where = b.gep(x_op.pointer, [off], inbounds=True, source_etype=ty)
        value = b.select(ok, _cast(b, load(b, src, o[-1]), ty), ir.Constant(ty, 0.0))
        b.store(b.fadd(b.load(where, typ=ty), value), where)

    loop_nest(L.b, g.shape, [x_op, *idx_ops, src], body)


def _no_lapack(L, node, why):
    raise CompileError(f"np.linalg.{node.prim.name} is not on the LLVM backend {why}", node.loc,
                       "Use backend='numpy' (and export to .py rather than .ll/.so) for models with "
                       + ("np.linalg.pinv." if node.prim is Pinv else
                          "np.linalg.solve, inv, det, slogdet, cholesky or eigh."))


@lowers(Pinv)
def lower_linalg_missing(L, node):
    """pinv would call LAPACK's gesdd: not done yet."""
    _no_lapack(L, node, "yet")


class _Scratch:
    """malloc'ed work arrays of one LAPACK call, freed after it."""

    def __init__(self, L):
        self.L, self.pointers = L, []

    def new(self, nbytes):
        ptr = self.L.b.call(self.L._libc("malloc", PTR, [I64]), [ir.Constant(I64, max(nbytes, 8))])
        self.pointers.append(ptr)
        return ptr

    def free(self):
        for ptr in self.pointers:
            self.L.b.call(self.L._libc("free", ir.VoidType(), [PTR]), [ptr])


def _lapack_ready(L, node):
    if not L.blas or lapack.find_lapacke() is None:
        _no_lapack(L, node, "in exported .ll/.so code (it would need LAPACK; a .so links only libc and libm)"
                   if not L.blas else "here: NumPy's bundled LAPACK was not found")
    dtypes = {v.dtype for v in node.inputs + node.outputs if v.dtype.kind == "f"}
    if len(dtypes) != 1 or next(iter(dtypes)) not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise CompileError(f"np.linalg.{node.prim.name} of mixed dtypes {sorted(map(str, dtypes))} on the LLVM "
                           "backend", node.loc, "Give the arguments one dtype (float64 or float32).")
    return next(iter(dtypes)).name


def _nan_if_failed(L, info, out):
    """LAPACK's info != 0 (a singular matrix, one not positive definite): the result is NaN, where NumPy
    raises LinAlgError."""
    with L.b.if_then(L.b.icmp_signed("!=", info, ir.Constant(info.type, 0))):
        L.fill(out, float("nan"))


@lowers(Solve, Inv)
def lower_solve(L, node):
    """gesv on copies: A's LU factors overwrite a scratch copy, the solution overwrites b's (or the identity's)."""
    dtype = _lapack_ready(L, node)
    a, out = node.inputs[0], node.outputs[0]
    n, size = a.shape[0], a.dtype.itemsize
    L.define(out)
    scratch = _Scratch(L)
    A = scratch.new(n * n * size)
    L.memcpy(A, L.buffer(a), n * n * size)
    if node.prim is Solve:
        b = node.inputs[1]
        nrhs = 1 if b.ndim == 1 else b.shape[1]
        L.memcpy(L.buffer(out), L.buffer(b), b.size * size)
    else:
        nrhs = n
        L.fill(out, 0.0)
        diagonal = Operand(L.buffer(out), llvm_type(out.dtype), (n + 1,))
        one = ir.Constant(llvm_type(out.dtype), 1.0)
        loop_nest(L.b, (n,), [diagonal], lambda b, o: store(b, one, diagonal, o[0]))
    ipiv = scratch.new(n * 8)
    info = lapack.call(L.b, "gesv", dtype, n, nrhs, A, n, ipiv, L.buffer(out), nrhs)
    scratch.free()
    _nan_if_failed(L, info, out)


@lowers(Det, Slogdet)
def lower_determinant(L, node):
    """getrf on a copy, then the product of U's diagonal, its sign flipped by each row exchange."""
    dtype = _lapack_ready(L, node)
    a = node.inputs[0]
    n, size, ty = a.shape[0], a.dtype.itemsize, llvm_type(a.dtype)
    for v in node.outputs:
        L.define(v)
    scratch = _Scratch(L)
    A = scratch.new(n * n * size)
    L.memcpy(A, L.buffer(a), n * n * size)
    ipiv = scratch.new(n * 8)
    lapack.call(L.b, "getrf", dtype, n, n, A, n, ipiv)   # info > 0: an exact zero on U's diagonal, det 0
    itype = lapack.integer_type()
    sign, acc = L.allocas.alloca(ty), L.allocas.alloca(ty)
    L.b.store(ir.Constant(ty, 1.0), sign)
    L.b.store(ir.Constant(ty, 0.0 if node.prim is Slogdet else 1.0), acc)
    diagonal, pivots = Operand(A, ty, (n + 1,)), Operand(ipiv, itype, (1,))
    fabs = L.module.declare_intrinsic("llvm.fabs", [ty])
    log = L.module.declare_intrinsic("llvm.log", [ty])

    def step(b, o):
        u = load(b, diagonal, o[0])
        swapped = b.icmp_signed("!=", load(b, pivots, o[1]), b.trunc(b.add(o[1], ir.Constant(I64, 1)), itype)
                                if itype.width < 64 else b.add(o[1], ir.Constant(I64, 1)))
        s = b.load(sign, typ=ty)
        s = b.select(swapped, b.fneg(s), s)
        if node.prim is Slogdet:
            s = b.select(b.fcmp_ordered("<", u, ir.Constant(ty, 0.0)), b.fneg(s), s)
            s = b.select(b.fcmp_ordered("==", u, ir.Constant(ty, 0.0)), ir.Constant(ty, 0.0), s)
            b.store(b.fadd(b.load(acc, typ=ty), b.call(log, [b.call(fabs, [u])])), acc)
        else:
            b.store(b.fmul(b.load(acc, typ=ty), u), acc)
        b.store(s, sign)

    loop_nest(L.b, (n,), [diagonal, pivots], step)
    scratch.free()
    if node.prim is Slogdet:
        L.b.store(L.b.load(sign, typ=ty), L.buffer(node.outputs[0]))
        L.b.store(L.b.load(acc, typ=ty), L.buffer(node.outputs[1]))
    else:
        L.b.store(L.b.fmul(L.b.load(sign, typ=ty), L.b.load(acc, typ=ty)), L.buffer(node.outputs[0]))


@lowers(Eigh)
def lower_eigh(L, node):
    """syevd('V', 'L') on a copy of a: the eigenvalues ascending into w, the eigenvectors (columns) over the
    copy; LAPACKE hands LAPACK the same column-major matrix NumPy's eigh does, so the signs are NumPy's."""
    dtype = _lapack_ready(L, node)
    a = node.inputs[0]
    w, v = node.outputs
    n = a.shape[0]
    L.define(w)
    L.define(v)
    L.memcpy(L.buffer(v), L.buffer(a), n * n * a.dtype.itemsize)
    char = ir.IntType(8)
    info = lapack.call(L.b, "syevd", dtype, ir.Constant(char, ord("V")), ir.Constant(char, ord("L")), n,
                       L.buffer(v), n, L.buffer(w))
    _nan_if_failed(L, info, w)
    _nan_if_failed(L, info, v)


@lowers(Cholesky)
def lower_cholesky(L, node):
    """potrf('L') on a copy of a, then the strict upper triangle set to 0 (NumPy's L)."""
    dtype = _lapack_ready(L, node)
    a, out = node.inputs[0], node.outputs[0]
    n, ty = a.shape[0], llvm_type(a.dtype)
    L.define(out)
    L.memcpy(L.buffer(out), L.buffer(a), n * n * a.dtype.itemsize)
    info = lapack.call(L.b, "potrf", dtype, ir.Constant(ir.IntType(8), ord("L")), n, L.buffer(out), n)
    entries, rows, cols = Operand(L.buffer(out), ty, (n, 1)), Operand(L.buffer(out), ty, (1, 0)), \
        Operand(L.buffer(out), ty, (0, 1))
    zero = ir.Constant(ty, 0.0)

    def upper(b, o):
        with b.if_then(b.icmp_signed(">", o[2], o[1])):
            store(b, zero, entries, o[0])

    loop_nest(L.b, (n, n), [entries, rows, cols], upper)
    _nan_if_failed(L, info, out)


@lowers(Argsort)
def lower_argsort(L, node):
    """A stable insertion sort of each lane's indices by value (NaNs last, as NumPy's)."""
    x, out = node.inputs[0], node.outputs[0]
    axis, n = node.attrs["axis"], x.shape[node.attrs["axis"]]
    L.define(out)
    ty = llvm_type(x.dtype)
    lane_shape = tuple(1 if d == axis else s for d, s in enumerate(x.shape))
    xs, os_ = contiguous_strides(x.shape), contiguous_strides(out.shape)
    src, dst = L.operand(x, xs), L.operand(out, os_)
    sx, so = xs[axis], os_[axis]
    i_slot, j_slot = L.allocas.alloca(I64), L.allocas.alloca(I64)

    def const(v):
        return ir.Constant(I64, v)

    def after(b, a, v):  # a belongs after v: a > v, or a is NaN and v is not
        nan_a = b.fcmp_unordered("uno", a, a)
        nan_v = b.fcmp_unordered("uno", v, v)
        return b.or_(b.fcmp_ordered(">", a, v), b.and_(nan_a, b.not_(nan_v)))

    def counted(b, start, stop, body):
        """for i in range(start, stop): body(b, i), with i kept in i_slot."""
        fn = b.function
        head, loop, done = fn.append_basic_block("sort_head"), fn.append_basic_block("sort_loop"), \
            fn.append_basic_block("sort_done")
        b.store(const(start), i_slot)
        b.branch(head)
        b.position_at_end(head)
        i = b.load(i_slot, typ=I64)
        b.cbranch(b.icmp_signed("<", i, const(stop)), loop, done)
        b.position_at_end(loop)
        body(b, i)
        b.store(b.add(b.load(i_slot, typ=I64), const(1)), i_slot)
        b.branch(head)
        b.position_at_end(done)

    def lane(b, offs):
        xo, oo = offs

        def at_out(b, k):
            return b.gep(dst.pointer, [b.add(oo, b.mul(k, const(so)))], inbounds=True, source_etype=I64)

        def value_of(b, index):
            return b.load(b.gep(src.pointer, [b.add(xo, b.mul(index, const(sx)))], inbounds=True,
                                source_etype=ty), typ=ty)

        counted(b, 0, n, lambda b, i: b.store(i, at_out(b, i)))

        def insert(b, i):
            key = b.load(at_out(b, i), typ=I64)
            kv = value_of(b, key)
            fn = b.function
            test, more, shift, place = (fn.append_basic_block(f"insert_{t}") for t in ("test", "more", "shift", "place"))
            b.store(b.sub(i, const(1)), j_slot)
            b.branch(test)
            b.position_at_end(test)
            j = b.load(j_slot, typ=I64)
            b.cbranch(b.icmp_signed(">=", j, const(0)), more, place)
            b.position_at_end(more)
            prev = b.load(at_out(b, j), typ=I64)
            b.cbranch(after(b, value_of(b, prev), kv), shift, place)
            b.position_at_end(shift)
            b.store(prev, at_out(b, b.add(j, const(1))))
            b.store(b.sub(j, const(1)), j_slot)
            b.branch(test)
            b.position_at_end(place)
            b.store(key, at_out(b, b.add(b.load(j_slot, typ=I64), const(1))))

        counted(b, 1, n, insert)

    loop_nest(L.b, lane_shape, [src, dst], lane)


@lowers(SetIndex)
def lower_set_index(L, node):
    """out = x, then out[index] = v (v broadcast to the indexed region, cast to out's dtype)."""
    (x, v), out = node.inputs, node.outputs[0]
    L.define(out)
    ty = llvm_type(out.dtype)
    src, dst = L.operand(x), L.operand(out)
    loop_nest(L.b, out.shape, [src, dst], lambda b, o: store(b, load(b, src, o[0]), dst, o[1]))
    offset, strides = _index_geometry(out.shape, node.attrs["index"])
    region = Operand(L.buffer(out), ty, strides, offset)
    shape = node.attrs["region"]
    value = L.operand(v, broadcast_strides(v.shape, shape))
    loop_nest(L.b, shape, [value, region], lambda b, o: store(b, _cast(b, load(b, value, o[0]), ty), region, o[1]))


def _cast(b, v, ty):
    """The element `v` as an element of type `ty`, as NumPy's astype converts: floats of either width,
    integers (i8 is a bool, 0 or 1) and floats into one another (a float into a bool is `v != 0`)."""
    if v.type == ty:
        return v
    if isinstance(ty, ir.IntType) and ty.width == 8:
        zero = ir.Constant(v.type, 0 if isinstance(v.type, ir.IntType) else 0.0)
        if isinstance(v.type, ir.IntType):
            return b.zext(b.icmp_unsigned("!=", v, zero), ty)
        return b.zext(b.fcmp_unordered("!=", v, zero), ty)
    if isinstance(v.type, ir.IntType):
        if isinstance(ty, ir.IntType):
            if v.type.width == 8:
                return b.zext(v, ty)
            return b.sext(v, ty) if ty.width > v.type.width else b.trunc(v, ty)
        return b.uitofp(v, ty) if v.type.width == 8 else b.sitofp(v, ty)
    if isinstance(ty, ir.IntType):
        return b.fptosi(v, ty)
    return b.fpext(v, ty) if isinstance(ty, ir.DoubleType) else b.fptrunc(v, ty)


@lowers(Concatenate)
def lower_concatenate(L, node):
    out = node.outputs[0]
    axis = node.attrs["axis"]
    L.define(out)
    ty = llvm_type(out.dtype)
    own = contiguous_strides(out.shape)
    start = 0
    for x in node.inputs:
        dst = Operand(L.buffer(out), ty, own, start * own[axis])
        src = L.operand(x)
        loop_nest(L.b, x.shape, [src, dst],
                  lambda b, o, src=src, dst=dst: store(b, _cast(b, load(b, src, o[0]), ty), dst, o[1]))
        start += x.shape[axis]


# ---- linear algebra ------------------------------------------------------------------------

def _matrix(L, v):
    """(pointer, transposed) for a 2-d operand, looking through virtual transposes."""
    if v in L.virtual_transposes:
        return L.buffer(v.node.inputs[0]), True
    return L.buffer(v), False


def _in_dtype(L, v, pointer, dtype):
    """`pointer` (v's elements) as `dtype`: products read one element type, so a mixed operand is converted."""
    if v.dtype == dtype:
        return pointer
    copy = Value(v.shape, dtype)  # a temporary, freed after this node
    L.define(copy)
    src = Operand(pointer, llvm_type(v.dtype), (1,))
    dst = Operand(L.buffer(copy), llvm_type(dtype), (1,))

    def body(b, o):
        store(b, _cast(b, load(b, src, o[0]), dst.etype), dst, o[1])

    loop_nest(L.b, (max(v.size, 1),), [src, dst], body)
    return L.buffer(copy)


@lowers(MatMul)
def lower_matmul(L, node):
    a, b = node.inputs
    out = node.outputs[0]
    L.define(out)
    if a.ndim <= 2 and b.ndim <= 2:
        m = a.shape[0] if a.ndim == 2 else 1
        k = a.shape[-1]
        n = b.shape[1] if b.ndim == 2 else 1
        pa, ta = _matrix(L, a) if a.ndim == 2 else (L.buffer(a), False)
        pb, tb = _matrix(L, b) if b.ndim == 2 else (L.buffer(b), False)
        pa, pb = _in_dtype(L, a, pa, out.dtype), _in_dtype(L, b, pb, out.dtype)
        blas_calls.gemm(L, out.dtype, m, n, k, pa, ta, pb, tb, L.buffer(out))
        return
    # batched: one product per batch index (NumPy's broadcasting of the leading dims)
    a2 = a.shape if a.ndim > 1 else (1,) + a.shape
    b2 = b.shape if b.ndim > 1 else b.shape + (1,)
    batch = tuple(out.shape[:len(out.shape) - (2 - (a.ndim == 1) - (b.ndim == 1))])
    m, k, n = a2[-2], a2[-1], b2[-1]
    sa = broadcast_strides(a2[:-2], batch)
    sb = broadcast_strides(b2[:-2], batch)
    so = contiguous_strides(batch)
    ty = llvm_type(out.dtype)
    buffer_a, buffer_b = _in_dtype(L, a, L.buffer(a), out.dtype), _in_dtype(L, b, L.buffer(b), out.dtype)
    for index in np.ndindex(*batch):
        off_a = sum(i * s for i, s in zip(index, sa)) * m * k
        off_b = sum(i * s for i, s in zip(index, sb)) * k * n
        off_o = sum(i * s for i, s in zip(index, so)) * m * n
        pa = L.b.gep(buffer_a, [ir.Constant(I64, off_a)], source_etype=ty)
        pb = L.b.gep(buffer_b, [ir.Constant(I64, off_b)], source_etype=ty)
        po = L.b.gep(L.buffer(out), [ir.Constant(I64, off_o)], source_etype=ty)
        blas_calls.gemm(L, out.dtype, m, n, k, pa, False, pb, False, po)


@lowers(Outer)
def lower_outer(L, node):
    a, b = node.inputs
    out = node.outputs[0]
    L.define(out)
    ty = llvm_type(out.dtype)
    pa, pb, po = L.operand(a, (1, 0)), L.operand(b, (0, 1)), L.operand(out)

    def body(bld, o):
        store(bld, bld.fmul(_cast(bld, load(bld, pa, o[0]), ty), _cast(bld, load(bld, pb, o[1]), ty)), po, o[2])

    loop_nest(L.b, out.shape, [pa, pb, po], body)


# ---- softmax family ---------------------------------------------------------------------------

def _exp_and_sum(L, node):
    z = node.inputs[0]
    e, s = node.outputs[1], node.outputs[2]
    axes = node.attrs["axes"]
    L.define(e)
    ty = llvm_type(z.dtype)
    src, dst = L.operand(z), L.operand(e)
    loop_nest(L.b, z.shape, [src, dst], lambda b, o: store(b, vecmath.exp(b, load(b, src, o[0])), dst, o[1]))
    L.define(s)
    _reduce_into(L, e, s, axes, "sum")
    return ty


def _elementwise(L, shape, inputs, out, fn):
    """out[i] = fn(builder, *inputs[i]) with broadcasting."""
    ops = [L.operand(v, broadcast_strides(v.shape, shape)) for v in inputs]
    dst = L.operand(out)
    loop_nest(L.b, shape, ops + [dst],
              lambda b, o: store(b, fn(b, *[load(b, op, off) for op, off in zip(ops, o)]), dst, o[-1]))


@lowers(LogSumExp)
def lower_logsumexp(L, node):
    _exp_and_sum(L, node)
    lse, s = node.outputs[0], node.outputs[2]
    L.define(lse)
    src, dst = L.operand(s), L.operand(lse)
    loop_nest(L.b, (s.size,), [Operand(src.pointer, src.etype, (1,)), Operand(dst.pointer, dst.etype, (1,))],
              lambda b, o: store(b, vecmath.log(b, load(b, src, o[0])), dst, o[1]))


@lowers(LogSoftmax)
def lower_log_softmax(L, node):
    _exp_and_sum(L, node)
    z = node.inputs[0]
    logp, s = node.outputs[0], node.outputs[2]
    L.define(logp)
    _elementwise(L, z.shape, [z, s], logp, lambda b, zz, ss: b.fsub(zz, vecmath.log(b, ss)))


@lowers(Softmax)
def lower_softmax(L, node):
    _exp_and_sum(L, node)
    z = node.inputs[0]
    p, e, s = node.outputs
    L.define(p)
    _elementwise(L, z.shape, [e, s], p, lambda b, ee, ss: b.fdiv(ee, ss))
