"""Loop nests over strided operands: the one way every array primitive touches memory.

An operand is a base pointer, its element type and one stride (in elements) per
loop dimension; a stride of 0 repeats an element (broadcasting) or accumulates
into it (reductions). Adjacent dimensions that every operand walks contiguously
are merged, so the innermost loop is as long as possible and the vectoriser sees
unit or zero strides.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from ...errors import CompileError

I8, I64 = ir.IntType(8), ir.IntType(64)


@dataclass
class Operand:
    pointer: ir.Value
    etype: ir.Type
    strides: tuple          # elements, one per dimension of the loop nest
    offset: int = 0         # elements


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


def loop_nest(builder, shape, operands, body):
    """Run `body(builder, offsets)` for every index of `shape`; offsets[i] is operand i's element offset (i64)."""
    dims = coalesce(shape, operands)
    base = [ir.Constant(I64, op.offset) for op in operands]
    if not dims:
        body(builder, base)
        return

    def level(d, offsets):
        n, strides = dims[d]
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


def element(builder, operand, offset):
    return builder.gep(operand.pointer, [offset], inbounds=True, source_etype=operand.etype)


def load(builder, operand, offset):
    return builder.load(element(builder, operand, offset), typ=operand.etype)


def store(builder, value, operand, offset):
    builder.store(value, element(builder, operand, offset))


# ---- element types ------------------------------------------------------------------------

def llvm_type(dtype):
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return ir.DoubleType()
    if dtype == np.float32:
        return ir.FloatType()
    if dtype.kind == "b":
        return I8
    if dtype.kind in "iu":
        return ir.IntType(dtype.itemsize * 8)
    raise CompileError(f"the LLVM backend has no type for {dtype}")


def float_type(dtypes):
    floats = [np.dtype(d) for d in dtypes if np.dtype(d).kind == "f"]
    return llvm_type(np.result_type(*floats) if floats else np.float64)


def convert(lower, value, dtype):
    """`value` (a number the lowering `lower` computed) as an element of `dtype`."""
    ty = llvm_type(dtype)
    if np.dtype(dtype).kind == "b":
        return lower.b.zext(lower.as_bool(value), I8)
    if isinstance(ty, ir.IntType):
        return lower.b.fptosi(lower.as_float(value), ty)
    value = lower.as_float(value)
    if value.type != ty:
        value = lower.b.fptrunc(value, ty) if isinstance(ty, ir.FloatType) else lower.b.fpext(value, ty)
    return value
