"""Element assignment (`y[i] = v`, `y[:, j] += v`) with functional semantics.

NumPy writes into y's memory, so every name, list entry and view that shares it
changes too. The IR is functional: the assignment makes a new version of y
(primitives.index.SetIndex) bound to y's name, and nothing else sees it. The two
agree exactly when nothing else shares y's memory, which is what is checked
here: y must be an array the model made (not a parameter, whose caller's array
NumPy would change, nor a view of another array), and no other name, list,
tuple or view may hold it. Anything else is a CompileError that says to copy
(`y = y.copy()`), never a silent difference from NumPy.

`y += v` (and the other augmented operators) on an array name is the same write: NumPy computes
`np.add(y, v, out=y)`, so the result keeps y's shape and dtype and everything sharing y sees it
(`in_place`). On a number or a 0-d value (a NumPy scalar, as reductions give) it rebinds the name,
as Python does.
"""
from __future__ import annotations

import ast

from .. import dtypes
from ..errors import CompileError, ShapeError
from ..ir import Value
from ..primitives import ops
from ..primitives.index import Index
from ..primitives.shape import BroadcastTo, Reshape, StopGradient, Transpose
from .closures import Closure

#: primitives whose result NumPy gives as a view of their input (memory shared with it)
_VIEWS = (Reshape, Transpose, BroadcastTo, StopGradient)


def view_base(v):
    """The array whose memory `v` shares in NumPy (v itself when it owns its memory)."""
    while isinstance(v, Value) and v.node is not None and _is_view(v.node):
        v = v.node.inputs[0]
    return v


def _is_view(node):
    if node.prim is Index:   # an integer in every axis gives a scalar copy, not a view
        return not all(isinstance(k, int) for k in node.attrs["index"])
    return node.prim in _VIEWS


_ASSIGNED_INTO: dict = {}


def assigned_into(src) -> frozenset:
    """The names of `src`'s function (nested defs included) that appear as `y` in `y[...] = `, `y[...] += `
    or `y += ` (which writes into y's array: `in_place`)."""
    cached = _ASSIGNED_INTO.get(id(src.node))
    if cached is not None and cached[1] is src.node:
        return cached[0]
    names = set()
    for node in ast.walk(src.node):
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        for t in targets:
            names.update(sub.value.id for sub in ast.walk(t)
                         if isinstance(sub, ast.Subscript) and isinstance(sub.value, ast.Name))
        if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    _ASSIGNED_INTO[id(src.node)] = (frozenset(names), src.node)  # the node kept alive: its id stays its own
    return frozenset(names)


def check_unshared(name, value, scope, frames, loc):
    """CompileError unless `value`, bound to `name` in `scope`, is an array of the model's own that no other
    name, list, tuple or view reachable from `frames` (the active ones) holds."""
    copy = f"Copy it first: `{name} = {name}.copy()` (or np.copy({name})), then assign into the copy."
    if value.node is None:
        raise CompileError(f"assigning into `{name}`, an argument of the model, would change the caller's array "
                           "in NumPy", loc, copy)
    if view_base(value) is not value:
        raise CompileError(f"`{name}` is a view of another array (a slice, reshape or transpose): assigning into "
                           "it would change that array too in NumPy", loc, copy)
    for frame, key, held in _references(frames):
        if frame is scope and key == name and held is value:
            continue
        if held is value or view_base(held) is value:
            what = "a view of it" if held is not value else "it too"
            raise CompileError(f"`{name}` is shared: `{key}` holds {what}, and NumPy would change that as well",
                               loc, copy)


def in_place(name, current, new, frames, loc, rebound, written=None):
    """The value `name` holds after `name op= v` when it holds the array `current` (ndim >= 1) and `new` is
    `current op v`: NumPy writes the result into current's memory, so it has current's shape (a
    ShapeError where it broadcasts larger, as NumPy's ValueError) and dtype (float32 stays float32 when
    v is float64: the result is cast, as NumPy's same-kind casting; other kinds are a CompileError), and
    current must be unshared (`check_unshared`). `frames`: (the frame of the statement, every active
    one); `rebound`: the statement written as `name = name op v`, for the hints; `written`: the array NumPy
    writes into, when not current itself (a `while` body's carried value). The new version is a
    Value no other name holds (value numbering may have found it already as another name's value)."""
    scope, active = frames
    if new.shape != current.shape:
        raise ShapeError(f"`{name}` has shape {current.shape} and the result of the augmented assignment "
                         f"{new.shape}: NumPy writes it into `{name}` and refuses (non-broadcastable output "
                         f"operand); for a new array of the broadcast shape write `{rebound}`", loc)
    check_unshared(name, current if written is None else written, scope, active, loc)
    if new.dtype != current.dtype:
        if not (dtypes.is_float(new.dtype) and dtypes.is_float(current.dtype)):
            raise CompileError(f"the augmented assignment writes a {new.dtype} result into `{name}`, a "
                               f"{current.dtype} array, which NumPy refuses (same-kind casting)", loc,
                               f"For a new array of the result's dtype write `{rebound}`.")
        new = ops.astype(new, current.dtype)
    if any(held is new for _, _, held in _references(active)):
        new = ops.copy(new)
    return new


def _references(frames):
    """(frame, name, value) for every array reachable from the frames' names, through lists, tuples and the
    frames closures were made in."""
    seen = set()
    todo = list(frames)
    while todo:
        f = todo.pop()
        if f is None or id(f) in seen:
            continue
        seen.add(id(f))
        todo.append(f.parent)
        for key, held in f.env.items():
            for v in _values(held, todo):
                yield f, key, v


def _values(x, frames):
    if isinstance(x, Value):
        yield x
    elif isinstance(x, (list, tuple)):
        for item in x:
            yield from _values(item, frames)
    elif isinstance(x, Closure):
        frames.append(x.frame)
