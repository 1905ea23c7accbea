"""Tapes: what a loop's forward pass records for its backward pass, one entry per iteration.

A tape is three 64-bit words {data, length, capacity} in an alloca: `data` grows by doubling (realloc), from
the largest capacity the same tape reached in earlier calls, and is freed when the scope that made the tape
ends. A kernel may write its value straight into the entry `reserve` hands out (regions.py). An entry is the bytes of a value (a taped tape is its
three words, moved: copied, then the source zeroed, so only the last owner frees it).
"""
from __future__ import annotations

from llvmlite import ir

from ...primitives.control import Tape
from .loops import I8, I64

PTR = ir.PointerType()
_ZERO = ir.Constant(I64, 0)
_WORDS = ir.ArrayType(I64, 3)


def entry_bytes(v) -> int:
    """The bytes one entry of a tape of `v` takes (a taped tape is its three words)."""
    return 24 if isinstance(v, Tape) else max(v.size, 1) * v.dtype.itemsize


def _field(b, tape, k):
    return b.gep(tape, [ir.Constant(I64, k)], source_etype=I64)


def _data(b, tape):
    return b.inttoptr(b.load(_field(b, tape, 0), typ=I64), PTR)


def clear(b, tape):
    """Zero the three words (an empty tape, or the source of a moved one)."""
    b.store(ir.Constant(_WORDS, None), b.bitcast(tape, ir.PointerType(_WORDS)))


def define_tape(L, v):
    """An empty tape for `v`, owned by the scope being lowered."""
    ptr = L.allocas.alloca(I64, size=3)
    clear(L.b, ptr)
    L.buffers[v] = ptr
    L.tapes.append(ptr)
    return ptr


def free_tape(L, ptr):
    L.b.call(L._libc("free", ir.VoidType(), [PTR]), [_data(L.b, ptr)])


def reserve(L, tape, nbytes):
    """A pointer to a new last entry of `tape` (`nbytes`, not yet written), doubling its capacity when full.

    An empty tape starts at the largest capacity this tape has grown to in earlier calls (a global per
    tape, read and written atomically: a hint, shared by threads), at least 4 entries: a loop that runs
    no more often than before then allocates once per call and never copies the tape to grow it. (The
    allocation is as large as the largest call's; only the entries written are touched.)
    """
    b = L.b
    hint = ir.GlobalVariable(L.module, I64, L.module.get_unique_name("tape_capacity"))
    hint.linkage = "internal"
    hint.initializer = ir.Constant(I64, 0)
    n = b.load(_field(b, tape, 1), typ=I64)
    cap = b.load(_field(b, tape, 2), typ=I64)
    with b.if_then(b.icmp_unsigned(">=", n, cap), likely=False):
        last = b.load_atomic(hint, "monotonic", 8, typ=I64)
        first = b.select(b.icmp_unsigned(">", last, ir.Constant(I64, 4)), last, ir.Constant(I64, 4))
        grown = b.select(b.icmp_unsigned("==", cap, _ZERO), first, b.mul(cap, ir.Constant(I64, 2)))
        realloc = L._libc("realloc", PTR, [PTR, I64])
        data = b.call(realloc, [_data(b, tape), b.mul(grown, ir.Constant(I64, nbytes))])
        b.store(b.ptrtoint(data, I64), _field(b, tape, 0))
        b.store(grown, _field(b, tape, 2))
        b.store_atomic(grown, hint, "monotonic", 8)
    slot = b.gep(_data(b, tape), [b.mul(n, ir.Constant(I64, nbytes))], source_etype=I8)
    b.store(b.add(n, ir.Constant(I64, 1)), _field(b, tape, 1))
    return slot


def push(L, tape, source, nbytes, move):
    """Append the `nbytes` at `source` to `tape`."""
    slot = reserve(L, tape, nbytes)
    L.b.call(L._libc("memcpy", PTR, [PTR, PTR, I64]), [slot, source, ir.Constant(I64, nbytes)])
    if move:
        clear(L.b, source)


def pop(L, tape, nbytes):
    """A pointer to the last entry of `tape`, which it no longer counts (the memory stays until the tape is freed)."""
    b = L.b
    n = b.sub(b.load(_field(b, tape, 1), typ=I64), ir.Constant(I64, 1))
    b.store(n, _field(b, tape, 1))
    return b.gep(_data(b, tape), [b.mul(n, ir.Constant(I64, nbytes))], source_etype=I8)


