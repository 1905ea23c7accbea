"""Liveness: where each value of a finished node list is read for the last time, and which die there.

A backend whose values live until the function returns (NumPy's locals) frees a large one
at its last read (`del h, d_t  # last use`), so that what the generated code holds is what
the memory report counts. Small values are left alone: freeing them saves nothing a memory
profiler sees and only lengthens the code. Under a memory budget every value is freed.
"""
from __future__ import annotations

#: values of at least this many bytes are freed at their last use without a budget (8192 float64s:
#: a 0.5 MiB activation is one of 8); smaller ones live until the function returns
LARGE_BYTES = 64 * 2**10


def nbytes(v) -> int:
    return v.size * v.dtype.itemsize


def root(v):
    """The value whose memory `v` reads (itself, unless it is a view)."""
    while v.node is not None and v.node.prim.view:
        v = v.node.inputs[0]
    return v


def last_uses(nodes, inlinable=frozenset()) -> dict:
    """Each value's last reader (its index in `nodes`); a view written inline extends its input's life."""
    last = {}
    for i, n in enumerate(nodes):
        stack = list(n.inputs)
        while stack:
            v = stack.pop()
            last[v] = i
            if v in inlinable and v.node is not None:
                stack.extend(v.node.inputs)
    return last


def dying(nodes, inlinable=frozenset(), keep=(), aliases=(), min_bytes=0) -> dict:
    """Index in `nodes` -> the values whose memory may be freed after that node, in a fixed order.

    Not freed: what `keep` holds (results, parameters), inputs and views of inputs (no memory of their
    own), numbers, values smaller than `min_bytes`. `aliases` are groups of values sharing one array (an
    element assignment written in place): a group dies at the last read of any of them, and not at all
    if one of them is kept. A value no node reads dies where it is made."""
    last = last_uses(nodes, inlinable)
    keep = set(keep)
    group_of: dict = {}
    for group in aliases:
        members = list(group)
        for v in members:
            group_of[v] = members
    out: dict = {}
    for i, n in enumerate(nodes):
        for o in n.outputs:
            if o not in last:
                last[o] = i
    for v, i in last.items():
        members = group_of.get(v, [v])
        if any(w in keep for w in members):
            continue
        if v.node is None or v.shape == () or root(v).node is None or nbytes(v) < min_bytes:
            continue
        end = max(last.get(w, -1) for w in members)
        if end == i:
            out.setdefault(i, []).append(v)
    return out
