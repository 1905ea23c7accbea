"""Loop nests over strided operands: the one way every array primitive touches memory.

An operand is a base pointer, its element type and one stride (in elements) per
loop dimension; a stride of 0 repeats an element (broadcasting) or accumulates
into it (reductions). Adjacent dimensions that every operand walks contiguously
are merged, so the innermost loop is as long as possible and the vectoriser sees
unit or zero strides.

Sums are blocked (`loop_nest(..., sums=, allocas=)`): where the innermost loop
adds into an accumulator that stays put (stride 0), it runs in blocks of
`SUM_BLOCK` elements, each summed into a fresh 0-d slot (an alloca LLVM keeps
in a register, its vector lanes partial sums), and the block sums are added
`SUM_FANIN` at a time, level by level, before the total reaches the
accumulator: the rounding error grows like log n, as NumPy's pairwise sum,
instead of n / lanes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from ...dtypes import is_bfloat16, is_float, is_half
from ...errors import CompileError

I8, I64 = ir.IntType(8), ir.IntType(64)


@dataclass
class Operand:
    pointer: ir.Value
    etype: ir.Type
    strides: tuple          # elements, one per dimension of the loop nest
    offset: int = 0         # elements
    #: "float16" or "bfloat16": elements stored in 16 bits, loaded as float32 and stored from it
    half: str | None = None


def contiguous_strides(shape):
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def broadcast_strides(shape, target):
    """Strides of a C-contiguous array of `shape` read as the broadcast `target` shape."""
    own = contiguous_strides(shape)
    lead = len(target) - len(shape)
    out = [0] * lead
    for n, s in zip(shape, own):
        out.append(0 if n == 1 else s)
    return tuple(out)


def coalesce(shape, operands):
    """Merge dimension i into i+1 wherever every operand walks them as one."""
    dims = [(n, [op.strides[i] for op in operands]) for i, n in enumerate(shape) if n != 1]
    merged = []
    for n, strides in dims:
        if merged:
            m, outer = merged[-1]
            if all(o == s * n for o, s in zip(outer, strides)):
                merged[-1] = (m * n, strides)
                continue
        merged.append((n, strides))
    return merged


#: elements per innermost block of a blocked sum, and block sums added together per level
#: (4e6 float32: error 3.3e-8 relative as NumPy's 3.4e-8, against 1.6e-7 unblocked)
SUM_BLOCK = 256
SUM_FANIN = 16


def loop_nest(builder, shape, operands, body, sums=(), allocas=None):
    """Run `body(builder, offsets)` for every index of `shape`; offsets[i] is operand i's element offset (i64).

    `sums` are the indices of float operands the body adds into (load, fadd, store at its offset);
    with `allocas` (a builder in the function's entry block) their innermost loop is blocked as the
    module says.
    """
    dims = coalesce(shape, operands)
    base = [ir.Constant(I64, op.offset) for op in operands]
    if not dims:
        body(builder, base)
        return
    if allocas is not None and dims[-1][0] > SUM_BLOCK:
        blocked = [i for i in sums if dims[-1][1][i] == 0
                   and isinstance(operands[i].etype, (ir.FloatType, ir.DoubleType))]
    else:
        blocked = []

    def level(d, offsets):
        n, strides = dims[d]
        if d + 1 == len(dims) and blocked:
            _blocked_sum(builder, n, strides, offsets, operands, blocked, allocas, body)
            return
        function = builder.function
        head = builder.block
        loop = function.append_basic_block(f"loop{d}")
        done = function.append_basic_block(f"done{d}")
        builder.branch(loop)
        builder.position_at_end(loop)
        index = builder.phi(I64, name=f"i{d}")
        index.add_incoming(ir.Constant(I64, 0), head)
        inner = [builder.add(o, builder.mul(index, ir.Constant(I64, s))) if s else o
                 for o, s in zip(offsets, strides)]
        if d + 1 < len(dims):
            level(d + 1, inner)
        else:
            body(builder, inner)
        following = builder.add(index, ir.Constant(I64, 1))
        index.add_incoming(following, builder.block)
        builder.cbranch(builder.icmp_signed("<", following, ir.Constant(I64, n)), loop, done)
        builder.position_at_end(done)

    level(0, base)


def _counted_loop(builder, lo, hi, step, name, body):
    """for (i = lo; i < hi; i += step) body(i), lo < hi known; lo and hi i64 values, step a number."""
    function = builder.function
    head = builder.block
    loop = function.append_basic_block(name)
    done = function.append_basic_block(name + "_done")
    builder.branch(loop)
    builder.position_at_end(loop)
    index = builder.phi(I64, name=name + "_i")
    index.add_incoming(lo, head)
    body(index)
    following = builder.add(index, ir.Constant(I64, step))
    index.add_incoming(following, builder.block)
    builder.cbranch(builder.icmp_signed("<", following, hi), loop, done)
    builder.position_at_end(done)


def _min(builder, a, b):
    return builder.select(builder.icmp_signed("<", a, b), a, b)


def _blocked_sum(builder, n, strides, offsets, operands, blocked, allocas, body):
    """The innermost loop (n, strides) with the `blocked` operands' sums taken in levels of slots
    (allocas in the entry block, which LLVM keeps in registers)."""
    sizes = [SUM_BLOCK]
    while sizes[-1] < n:
        sizes.append(sizes[-1] * SUM_FANIN)
    # slots[l][k]: level l's partial sum for blocked operand k (level len(sizes) - 1 is the accumulator itself)
    slots = [[allocas.alloca(operands[i].etype) for i in blocked] for _ in sizes[:-1]]
    saved = [(operands[i].pointer, operands[i].offset) for i in blocked]
    zero = [ir.Constant(operands[i].etype, 0.0) for i in blocked]

    def add_into(targets, values):
        for t, v in zip(targets, values):
            builder.store(builder.fadd(builder.load(t, typ=v.type), v, flags=("reassoc",)), t)

    def run(l, lo, hi):
        """Elements lo .. hi (i64) at level l: level 0 is the body, level l > 0 runs level l - 1 in pieces."""
        if l == 0:
            def elements(i):
                inner = [builder.add(o, builder.mul(i, ir.Constant(I64, s))) if s else o
                         for o, s in zip(offsets, strides)]
                for k, i_op in enumerate(blocked):
                    inner[i_op] = ir.Constant(I64, 0)
                body(builder, inner)
            for k, i_op in enumerate(blocked):
                operands[i_op].pointer = slots[0][k]
            _counted_loop(builder, lo, hi, 1, "sum0", elements)
            for k, i_op in enumerate(blocked):
                operands[i_op].pointer = saved[k][0]
            return
        step = sizes[l - 1]

        def piece(start):
            for k in range(len(blocked)):
                builder.store(zero[k], slots[l - 1][k])
            run(l - 1, start, _min(builder, builder.add(start, ir.Constant(I64, step)), hi))
            values = [builder.load(slots[l - 1][k], typ=operands[i_op].etype) for k, i_op in enumerate(blocked)]
            if l == len(sizes) - 1:  # the accumulator, at the element the outer loops give
                targets = [builder.gep(saved[k][0], [offsets[i_op]], inbounds=True,
                                       source_etype=operands[i_op].etype) for k, i_op in enumerate(blocked)]
            else:
                targets = slots[l]
            add_into(targets, values)
        _counted_loop(builder, lo, hi, step, f"sum{l}", piece)

    run(len(sizes) - 1, ir.Constant(I64, 0), ir.Constant(I64, n))


def element(builder, operand, offset):
    return builder.gep(operand.pointer, [offset], inbounds=True, source_etype=operand.etype)


def load(builder, operand, offset):
    value = builder.load(element(builder, operand, offset), typ=operand.etype)
    return widen(builder, value, operand.half) if operand.half else value


def store(builder, value, operand, offset):
    if operand.half and value.type != operand.etype:
        value = narrow(builder, value, operand.half)
    builder.store(value, element(builder, operand, offset))


# ---- 16-bit floats: float16 is LLVM's half (F16C instructions on x86-64-v3), bfloat16 an i16 holding the
# top half of a float32's bits; both are computed in float32 (symbackprop/dtypes.py)

I16, I32, F32 = ir.IntType(16), ir.IntType(32), ir.FloatType()


def widen(builder, value, half):
    """A 16-bit element as float32 (exact)."""
    if half == "float16":
        return builder.fpext(value, F32)
    return builder.bitcast(builder.shl(builder.zext(value, I32), ir.Constant(I32, 16)), F32)


def narrow(builder, value, half):
    """A float32 as the nearest 16-bit element, ties to even, as NumPy and ml_dtypes round."""
    if isinstance(value.type, ir.DoubleType):  # (double to half directly would be a libcall on x86)
        value = builder.fptrunc(value, F32)
    if half == "float16":
        return builder.fptrunc(value, ir.HalfType())
    bits = builder.bitcast(value, I32)
    odd = builder.and_(builder.lshr(bits, ir.Constant(I32, 16)), ir.Constant(I32, 1))
    rounded = builder.lshr(builder.add(bits, builder.add(ir.Constant(I32, 0x7FFF), odd)), ir.Constant(I32, 16))
    nan = builder.fcmp_unordered("uno", value, value)
    # a NaN stays a (quiet) NaN: rounding its payload could carry it into an infinity
    return builder.trunc(builder.select(nan, ir.Constant(I32, 0x7FC0), rounded), I16)


# ---- element types ------------------------------------------------------------------------

def llvm_type(dtype):
    """The element type in memory (a 16-bit float's is half or i16: see `half_of`)."""
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return ir.DoubleType()
    if dtype == np.float32:
        return ir.FloatType()
    if dtype == np.float16:
        return ir.HalfType()
    if is_bfloat16(dtype):
        return I16
    if dtype.kind == "b":
        return I8
    if dtype.kind in "iu":
        return ir.IntType(dtype.itemsize * 8)
    raise CompileError(f"the LLVM backend has no type for {dtype}")


def half_of(dtype):
    """Operand.half for elements of `dtype`: its name for a 16-bit float, else None."""
    return np.dtype(dtype).name if is_half(dtype) else None


def compute_type(dtype):
    """The type arithmetic on elements of `dtype` is done in: float32 for 16-bit floats."""
    return F32 if is_half(dtype) else llvm_type(dtype)


def float_type(dtypes):
    floats = [np.dtype(d) for d in dtypes if is_float(d)]
    return compute_type(np.result_type(*floats) if floats else np.float64)


def convert(lower, value, dtype):
    """`value` (a number the lowering `lower` computed) as an element of `dtype` (a 16-bit float's as the
    float32 its store narrows)."""
    ty = compute_type(dtype)
    if np.dtype(dtype).kind == "b":
        return lower.b.zext(lower.as_bool(value), I8)
    if isinstance(ty, ir.IntType):
        return lower.b.fptosi(lower.as_float(value), ty)
    value = lower.as_float(value)
    if value.type != ty:
        value = lower.b.fptrunc(value, ty) if isinstance(ty, ir.FloatType) else lower.b.fpext(value, ty)
    return value
