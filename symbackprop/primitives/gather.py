"""Integer-array indexing (gathering) and its adjoint, a scatter-add at the same indices.

`x[idx]`, `logits[np.arange(n), labels]`, `np.take`, `np.take_along_axis` are one primitive: `gather`,
whose inputs are x and the integer index arrays, and whose `key` holds, per axis of x, a static slice,
a static int, or `("array", k)`: the k-th index array. NumPy's rule for where the broadcast index
dimensions go is followed: in place of the indexed axes when those (arrays and ints) are adjacent,
first otherwise. The adjoint of a gather is `scatter_add_at`: zeros of x's shape with the gradient
added at the same indices (`np.add.at`: repeated indices add up), whose own adjoint is the gather.
"""
from __future__ import annotations

import numpy as np

from ..errors import CompileError, ShapeError
from ..ir import Value, append, current_loc
from . import ops
from .elementwise import Constant, Fill
from .index import _slice_text
from .registry import Primitive, primitive


def is_array_entry(k):
    return isinstance(k, tuple) and len(k) == 2 and k[0] == "array"


def geometry(x_shape, key, index_shapes):
    """(result shape, broadcast index shape, where its dims start in the result) of x[key]."""
    try:
        bshape = tuple(np.broadcast_shapes(*index_shapes))
    except ValueError:
        raise ShapeError(f"index arrays of shapes {[tuple(s) for s in index_shapes]} do not broadcast together",
                         current_loc()) from None
    advanced = [d for d, k in enumerate(key) if is_array_entry(k) or isinstance(k, int)]
    adjacent = advanced == list(range(advanced[0], advanced[-1] + 1))
    sliced = [len(range(*k.indices(n))) for k, n in zip(key, x_shape) if isinstance(k, slice)]
    if adjacent:
        first = sum(1 for k in key[:advanced[0]] if isinstance(k, slice))
    else:
        first = 0
    shape = tuple(sliced[:first]) + bshape + tuple(sliced[first:])
    return shape, bshape, first


def key_text(key, names):
    """The index as written inside brackets, the k-th array entry written `names[k]`."""
    parts = []
    for k in key:
        if is_array_entry(k):
            parts.append(names[k[1]])
        elif isinstance(k, slice):
            parts.append(_slice_text(k))
        else:
            parts.append(str(k))
    while len(parts) > 1 and parts[-1] == ":":
        parts.pop()
    return ", ".join(parts)


@primitive("gather")
class Gather(Primitive):
    """x[key] with integer index arrays among the key's entries (inputs after x)."""

    explain_note = "scatter-added back at the indices"

    def infer(self, node):
        return [(node.attrs["shape"], node.inputs[0].dtype)]

    def adjoint(self, node, gs, wants):
        x, idx = node.inputs[0], node.inputs[1:]
        d_x = scatter_add_at(gs[0], idx, node.attrs["key"], x.shape) if wants[0] else None
        return [d_x] + [None] * len(idx)

    def batch(self, node, ins, batched, n):
        x = ops.batched(ins[0], batched[0], n)
        key, idx, perm = batched_key(node.inputs[0].shape, node.attrs["key"], ins[1:], batched[1:], n)
        return [ops.transpose(gather_key(x, idx, key), perm)]

    def describe(self, node):
        return f"[{key_text(node.attrs['key'], [f'i{k}' for k in range(len(node.inputs) - 1)])}]"


@primitive("scatter_add_at")
class ScatterAddAt(Primitive):
    """Zeros of `shape` with g added at x[key] (np.add.at: repeated indices accumulate)."""

    explain_note = "the gradient gathered at the indices"

    def infer(self, node):
        return [(node.attrs["shape"], node.inputs[0].dtype)]

    def adjoint(self, node, gs, wants):
        idx = node.inputs[1:]
        d_g = gather_key(gs[0], idx, node.attrs["key"]) if wants[0] else None
        return [d_g] + [None] * len(idx)

    def batch(self, node, ins, batched, n):
        g = ops.batched(ins[0], batched[0], n)
        key, idx, perm = batched_key(node.attrs["shape"], node.attrs["key"], ins[1:], batched[1:], n)
        return [scatter_add_at(ops.transpose(g, _inverse(perm)), idx, key, (n,) + node.attrs["shape"])]

    def describe(self, node):
        return "scatter-add at indices"

    def summed(self, node, axes, keepdims):
        """sum(scatter(g, idx), axes) without the dense scatter, or None: when only index arrays index x
        and the summed axes are among them, the sum is the scatter of g over the other index arrays, and
        an index np.arange(n) over all of a length-n axis (the rows of logits[np.arange(n), labels]) is g."""
        g, idx, key, shape = node.inputs[0], node.inputs[1:], node.attrs["key"], node.attrs["shape"]
        if not all(is_array_entry(k) for k in key) or not axes:
            return None
        _, bshape, _ = geometry(shape, key, [i.shape for i in idx])
        kept = [d for d in range(len(shape)) if d not in axes]
        kept_idx = [idx[key[d][1]] for d in kept]
        if kept_idx and tuple(np.broadcast_shapes(*[i.shape for i in kept_idx])) != bshape:
            return None
        if not kept:
            out = ops.sum(g)
        elif len(kept) == 1 and _is_arange(kept_idx[0], shape[kept[0]]) and g.shape == (shape[kept[0]],):
            out = g
        else:
            out = scatter_add_at(g, kept_idx, tuple(("array", k) for k in range(len(kept))),
                                 tuple(shape[d] for d in kept))
        if keepdims:
            out = ops.reshape(out, tuple(1 if d in axes else n for d, n in enumerate(shape)))
        return out

    def added(self, node, other, sign):
        """other + sign * scatter(g, idx) as one add_at (other's array with g added at the indices), or None
        when other does not have the scatter's shape and dtype."""
        other = ops.as_value(other)
        out = node.outputs[0]
        if other.shape != out.shape or other.dtype != out.dtype or other.ndim == 0:
            return None
        g = node.inputs[0] if sign > 0 else ops.neg(node.inputs[0])
        return append(AddAt, [other, g, *node.inputs[1:]], {"key": node.attrs["key"]})


def _is_arange(v, n):
    node = v.node
    return (node is not None and node.prim is Constant and v.shape == (n,)
            and tuple(node.attrs["values"]) == tuple(range(n)))


@primitive("add_at")
class AddAt(Primitive):
    """base with g added at base[key] (np.add.at into a copy of base, or into base itself when nothing reads
    it after): `d_z = -p*t; np.add.at(d_z, (rows, labels), g)`, where a scatter would build a dense array."""

    explain_note = "g added at the indices"

    def infer(self, node):
        base = node.inputs[0]
        return [(base.shape, base.dtype)]

    def adjoint(self, node, gs, wants):
        idx = node.inputs[2:]
        d_base = gs[0] if wants[0] else None
        d_g = gather_key(gs[0], idx, node.attrs["key"]) if wants[1] else None
        return [d_base, d_g] + [None] * len(idx)

    def batch(self, node, ins, batched, n):
        base, g = ops.batched(ins[0], batched[0], n), ops.batched(ins[1], batched[1], n)
        key, idx, perm = batched_key(node.inputs[0].shape, node.attrs["key"], ins[2:], batched[2:], n)
        return [append(AddAt, [base, ops.transpose(g, _inverse(perm)), *idx], {"key": key})]

    def describe(self, node):
        return "add at indices"


def batched_key(x_shape, key, idx, idx_batched, n):
    """(key, index arrays, perm) of the gather reading x[key] of all n examples at once from x with a leading
    batch axis: without batched indices the batch axis is one more slice; with them, it is indexed by
    np.arange(n) broadcast against them. `perm` transposes that gather's result to the batch axis first and
    then each example's layout (NumPy moves the broadcast index dimensions to the front unless adjacent)."""
    own = [i.shape[1:] if b else i.shape for i, b in zip(idx, idx_batched)]
    shape, bshape, first = geometry(x_shape, key, own)
    nb = len(bshape)
    if not any(idx_batched):
        new_key = (slice(None),) + tuple(key)
        _, _, new_first = geometry((n,) + tuple(x_shape), new_key, own)
        total = len(shape) + 1
        perm = tuple(range(total)) if new_first > 0 else (nb,) + tuple(range(nb)) + tuple(range(nb + 1, total))
        return new_key, list(idx), perm
    lifted = [ops.lift(i, (n,), nb) if b else i for i, b in zip(idx, idx_batched)]
    rows_shape = (n,) + (1,) * nb
    rows = int_constant(np.arange(n).reshape(rows_shape), f"np.arange({n}).reshape({rows_shape!r})")
    new_key = (("array", len(idx)),) + tuple(key)
    sliced = len(shape) - nb
    perm = (0,) + tuple(1 + nb + j for j in range(first)) + tuple(1 + t for t in range(nb)) \
        + tuple(1 + nb + j for j in range(first, sliced))
    return new_key, lifted + [rows], perm


def _inverse(perm):
    inverse = [0] * len(perm)
    for i, p in enumerate(perm):
        inverse[p] = i
    return tuple(inverse)


def gather_key(x, idx, key):
    shape, _, _ = geometry(x.shape, key, [i.shape for i in idx])
    return append(Gather, [x, *idx], {"key": tuple(key), "shape": shape})


def scatter_add_at(g, idx, key, shape):
    return append(ScatterAddAt, [g, *idx], {"key": tuple(key), "shape": tuple(shape)})


def _index_array(it):
    """An index entry as an integer Value, or None for a static entry (int, slice, None, ...)."""
    if isinstance(it, (list, tuple)):
        arr = np.asarray(it)
        if arr.dtype.kind == "b":
            raise CompileError("indexing with a list of booleans is not supported", current_loc(),
                               "Use np.where(mask, x, 0.0) to select elements.")
        if arr.dtype.kind not in "iu" or arr.ndim == 0 and arr.size == 0:
            raise CompileError(f"index {it!r}: a list index must hold whole numbers", current_loc(),
                               "Index with a list of ints, an integer array, or np.arange(...).")
        return int_constant(arr, f"np.array({arr.tolist()!r})")
    if isinstance(it, np.ndarray):
        return int_constant(it, f"np.array({it.tolist()!r})")
    if not isinstance(it, Value):
        return None
    if it.dtype.kind == "b":
        raise CompileError("boolean-mask indexing (x[x > 0]) makes an array whose shape depends on the data",
                           current_loc(), "Use np.where(mask, x, 0.0) to select elements, and sum or average "
                           "with the mask instead of selecting.")
    if it.dtype.kind in "iu":
        return it
    node = it.node
    if node is not None and node.prim in (Constant, Fill):
        values = np.array(node.attrs["values"] if node.prim is Constant else
                          [node.attrs["value"]] * it.size).reshape(it.shape)
        if np.all(values == np.round(values)):
            text = node.attrs.get("int_text") if node.prim is Constant else None
            return int_constant(values.astype(np.int64), text or f"np.array({values.astype(np.int64).tolist()!r})")
    raise CompileError(f"indexing with a {it.dtype} array: index arrays must be integers (a "
                       "division or np.mod of integer arrays is a float array in a model)", current_loc(),
                       "Pass the indices as an integer array argument (labels: int64) computed outside the "
                       "model, or use np.arange(...) and lists of ints.")


def int_constant(arr, text):
    arr = np.asarray(arr).astype(np.int64)
    return append(Constant, [], {"values": tuple(int(v) for v in arr.ravel()), "shape": arr.shape,
                                 "dtype": np.dtype(np.int64), "text": text})


def has_index_array(idx):
    items = idx if isinstance(idx, tuple) else (idx,)
    return any(isinstance(it, (Value, list, np.ndarray)) for it in items)


def gather(x, idx):
    """x[idx] where idx holds integer arrays (Values, lists, np.arange): NumPy's advanced indexing."""
    items = list(idx) if isinstance(idx, tuple) else [idx]
    if any(it is None for it in items):
        raise CompileError("`None` beside an index array is not supported", current_loc(),
                           "Index first, then add the axis with np.expand_dims or x[..., None].")
    if sum(1 for it in items if it is Ellipsis) > 1:
        raise CompileError("an index can have only one `...`", current_loc())
    n_real = sum(1 for it in items if it is not Ellipsis)
    if n_real > x.ndim:
        raise ShapeError(f"too many indices for an array of shape {x.shape}", current_loc())
    expanded = []
    for it in items:
        if it is Ellipsis:
            expanded.extend([slice(None)] * (x.ndim - n_real))
        else:
            expanded.append(it)
    expanded += [slice(None)] * (x.ndim - len(expanded))
    key, arrays = [], []
    for d, (it, n) in enumerate(zip(expanded, x.shape)):
        arr = _index_array(it)
        if arr is not None:
            if arr.node is not None and arr.node.prim.name == "constant":
                values = np.array(arr.node.attrs["values"])
                if values.size and (values.min() < -n or values.max() >= n):
                    raise ShapeError(f"index {int(values.max() if values.max() >= n else values.min())} is "
                                     f"out of bounds for axis {d} with size {n}", current_loc())
            key.append(("array", len(arrays)))
            arrays.append(arr)
        elif isinstance(it, slice):
            for part in (it.start, it.stop, it.step):
                if part is not None and not isinstance(part, (int, np.integer)):
                    raise CompileError(f"slice bounds must be known at compile time, got {part!r}", current_loc())
            if it.step == 0:
                raise ShapeError("slice step cannot be zero", current_loc())
            start, stop, step = it.indices(n)
            # a reversed slice to the front keeps stop None (a stop of -1 would mean the last entry again)
            key.append(slice(None) if (start, stop, step) == (0, n, 1) else slice(start, None if stop < 0 else stop, step))
        elif isinstance(it, (int, np.integer)) and not isinstance(it, (bool, np.bool_)):
            i = int(it)
            if not -n <= i < n:
                raise ShapeError(f"index {i} is out of bounds for axis {d} with size {n}", current_loc())
            key.append(i % n)
        else:
            raise CompileError(f"index {it!r} is not supported", current_loc(),
                               "Index with whole numbers, slices, loop indices and integer arrays.")
    return gather_key(x, arrays, tuple(key))


def take(a, indices, axis=None):
    """np.take(a, indices, axis): a[..., indices, ...] on `axis` (the flattened array when axis is None)."""
    a = ops.as_value(a)
    if axis is None:
        a = ops.reshape(a, (a.size,))
        axis = 0
    axis = ops.normalize_axes(axis, a.ndim)[0]
    if isinstance(indices, (int, np.integer)):
        return ops.index(a, (slice(None),) * axis + (int(indices),))
    return gather(a, (slice(None),) * axis + (indices,))


def take_along_axis(arr, indices, axis):
    """np.take_along_axis: every other axis indexed by its own np.arange, broadcast against `indices`."""
    arr = ops.as_value(arr)
    if axis is None:
        arr, axis = ops.reshape(arr, (arr.size,)), 0
    idx = _index_array(indices)
    if idx is None:
        raise CompileError("np.take_along_axis takes an integer index array", current_loc(),
                           "Pass an integer array of arr's number of dimensions.")
    if idx.ndim != arr.ndim:
        raise ShapeError(f"np.take_along_axis: indices of shape {idx.shape} need {arr.ndim} dimensions like "
                         f"arr's {arr.shape}", current_loc())
    axis = ops.normalize_axes(axis, arr.ndim)[0]
    key = []
    for d, n in enumerate(arr.shape):
        if d == axis:
            key.append(idx)
        else:
            shape = [1] * arr.ndim
            shape[d] = n
            key.append(int_constant(np.arange(n).reshape(shape),
                                    f"np.arange({n}).reshape({tuple(shape)!r})"))
    return gather(arr, tuple(key))


# ---- sorting: a permutation, then a gather --------------------------------------------------------------

@primitive("argsort")
class Argsort(Primitive):
    """The stable sorting permutation of x along `axis` (int64; NaNs last, as NumPy's). An index has no
    derivative: np.sort is the gather of x at it, so the gradient of a sort follows the permutation."""

    def infer(self, node):
        return [(node.inputs[0].shape, np.dtype(np.int64))]

    def adjoint(self, node, gs, wants):
        return [None]

    def batch(self, node, ins, batched, n):
        return [append(Argsort, ins, {"axis": node.attrs["axis"] + 1})]

    def describe(self, node):
        return f"argsort(axis={node.attrs['axis']})"

    def flops(self, node):
        n = node.inputs[0].shape[node.attrs["axis"]] if node.inputs[0].ndim else 1
        return max(1, node.inputs[0].size * max(1, int(np.log2(max(n, 2)))))


def _sort_axis(a, axis, what):
    a = ops.as_value(a)
    if a.dtype.kind != "f":
        raise CompileError(f"{what} of a {a.dtype} array is not supported", current_loc(),
                           "Sort float arrays; integer data is sorted outside the model.")
    if axis is None:
        a, axis = ops.reshape(a, (a.size,)), 0
    if a.ndim == 0:
        raise ShapeError(f"{what} of a 0-d array: give it at least one dimension", current_loc())
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise CompileError(f"{what}'s axis must be an int known at specialisation", current_loc())
    return a, ops.normalize_axes(int(axis), a.ndim)[0]


def _check_kind(kind, what):
    if kind not in (None, "stable", "mergesort", "quicksort", "heapsort"):
        raise CompileError(f"{what}(..., kind={kind!r}) is not a sorting kind", current_loc(),
                           "Leave kind out: the sort is stable.")


def argsort(a, axis=-1, kind=None):
    _check_kind(kind, "np.argsort")
    a, axis = _sort_axis(a, axis, "np.argsort")
    return append(Argsort, [a], {"axis": axis})


def sort(a, axis=-1, kind=None):
    """np.sort: x gathered at its stable sorting permutation (at ties the gradient follows that order)."""
    _check_kind(kind, "np.sort")
    a, axis = _sort_axis(a, axis, "np.sort")
    return take_along_axis(a, append(Argsort, [a], {"axis": axis}), axis)
