"""Value-dependent `if` and `while`: each branch and each loop body is traced once, into a sub-graph.

The tracer runs a model's body on the signature; an `if` or `while` whose condition is an array
value cannot be decided then, so its branches (or the loop's condition and body) are traced into
sub-graphs of a region node (primitives/control.py) instead of being run. Names are merged after
the region as SSA merges them:

- a name every path leaves bound to the same object stays as it is;
- a name bound to arrays or numbers (one shape and dtype on every path) becomes an output of the
  region; numbers become 0-d values (bool, int64 or float64, weak as Python's numbers are);
- any other name (bound on some paths only, or a list, tuple or string that differs) becomes
  `Undefined`, whose use is a CompileError saying why.

`break` and `continue` under a value-dependent condition set flags (the names `break` and
`continue` in the frame, which no model can spell): the rest of the loop body runs under
`if not (break or continue)`, a `while` tests `not break` with its condition, and a static `for`
runs each later iteration under `if not break`. A static `for` still unrolls: an `if` on a value
inside it is one region per iteration, in order.
"""
from __future__ import annotations

import ast
import numbers

import numpy as np

from ..errors import CompileError
from ..ir import Graph, Value, building
from ..primitives import control, ops
from ..primitives.elementwise import fill_value

MISSING = object()
#: the frame names of the loop flags, and how generated code calls them
FLAGS = ("break", "continue")
FLAG_NAMES = {"break": "broke", "continue": "skip"}
#: the name an `a if c else b` on a value stores its result under while its branches are traced
IFEXP = "if-expression"


class Escape(Exception):
    """A `break` or `continue` under a value-dependent condition: the flag is set, the rest skipped."""


class Loop:
    """A loop being traced: a region (`while` on values: break and continue always set flags) or
    unrolled, and how many value-dependent branches deep the tracer is inside it."""

    def __init__(self, region):
        self.region = region
        self.depth = 0

    @property
    def flagged(self) -> bool:
        return self.region or self.depth > 0


class Undefined:
    """What a name is bound to after a region that leaves it bound on some paths only, or differently."""

    def __init__(self, name, why, hint):
        self.name, self.why, self.hint = name, why, hint

    def error(self, loc):
        return CompileError(self.why, loc, self.hint)


def is_number(x) -> bool:
    return isinstance(x, (numbers.Number, np.number, np.bool_)) and not isinstance(x, Value)


def condition(test, loc, what, text, parenthesised=True):
    """The 0-d boolean deciding a value-dependent `if`/`while`: as NumPy's truth value, one element only."""
    if test.size != 1:
        shown = f" ({text})" if parenthesised else ""
        raise CompileError(f"{what} on an array value{shown} is not supported: it has {test.size} elements, "
                           "and NumPy's truth value of such an array is ambiguous (an error at run time)", loc,
                           f"Use np.any({text}) or np.all({text}) for one decision, or np.where({text}, a, b) "
                           "to choose element by element.")
    if test.shape != ():
        test = ops.reshape(test, ())
    if test.dtype.kind != "b":
        test = ops.compare("ne", test, 0)
    return test


def static_truth(pred):
    """True/False when the predicate folded to a constant (so the branch is decided now), else None."""
    c = fill_value(pred)
    return None if c is None else bool(c)


def number_dtype(values):
    """The dtype of a name that is a Python number on every path (weak, as NumPy treats Python numbers)."""
    if all(isinstance(x, (bool, np.bool_)) for x in values):
        return np.dtype(bool)
    if all(isinstance(x, (bool, int, np.integer)) for x in values):
        return np.dtype(np.int64)
    return np.dtype(np.float64)


def as_value(x, shape, dtype):
    """`x` (a Value of that shape and dtype, or a number) as a Value of the graph being built."""
    if isinstance(x, Value):
        return x
    return ops.fill(float(x), shape, dtype)


def spec_of(name, values, loc, where):
    """(shape, dtype, weak) of a name that is an array or number on every path: one of each, or a CompileError."""
    arrays = [v for v in values if isinstance(v, Value)]
    if not arrays:  # a Python float is weak (it adapts to float32 arrays); an int counts as int64
        dtype = number_dtype(values)
        return (), dtype, dtype.kind == "f"
    first = arrays[0]
    for v in arrays[1:] + [x for x in values if not isinstance(x, Value)]:
        shape = v.shape if isinstance(v, Value) else ()
        if shape != first.shape:
            raise CompileError(f"`{name}` would have shape {first.shape} {where[0]} and {shape} {where[1]}; "
                               "a value-dependent `if` or `while` keeps each name's shape and dtype", loc,
                               "Give it the same shape on every path (np.zeros_like(x), np.full(x.shape, v)).")
        if isinstance(v, Value) and v.dtype != first.dtype:
            raise CompileError(f"`{name}` would be {first.dtype} {where[0]} and {v.dtype} {where[1]}; "
                               "a value-dependent `if` or `while` keeps each name's shape and dtype", loc,
                               "Give it the same dtype on every path.")
    return first.shape, first.dtype, all(v.weak for v in arrays)


def assigned_names(body) -> list:
    """The names a block binds (`y[i] = v` binds y anew), in order of first appearance; not those of
    the functions and comprehensions it defines."""
    found = {}
    todo = list(body)
    while todo:
        n = todo.pop()
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            found.setdefault(n.id, (n.lineno, n.col_offset))
        elif isinstance(n, ast.Subscript) and isinstance(n.ctx, ast.Store):
            base = n.value
            if isinstance(base, ast.Name):
                found.setdefault(base.id, (base.lineno, base.col_offset))
        elif isinstance(n, ast.FunctionDef):
            found.setdefault(n.name, (n.lineno, n.col_offset))
            continue
        elif isinstance(n, (ast.Lambda, ast.ListComp, ast.GeneratorExp, ast.SetComp, ast.DictComp)):
            continue
        todo.extend(ast.iter_child_nodes(n))
    return sorted(found, key=found.get)


def breaks(body) -> bool:
    """Whether the block has a `break` of its own loop (not of a loop nested in it)."""
    todo = list(body)
    while todo:
        n = todo.pop()
        if isinstance(n, ast.Break):
            return True
        if isinstance(n, (ast.For, ast.While, ast.FunctionDef, ast.Lambda)):
            if isinstance(n, (ast.For, ast.While)):
                todo.extend(n.orelse)
            continue
        todo.extend(ast.iter_child_nodes(n))
    return False


def lists_in(envs) -> set:
    """The ids of the lists reachable from the names of `envs` (a region may read them, not change them)."""
    found, todo = set(), [x for env in envs for x in env.values()]
    while todo:
        x = todo.pop()
        if isinstance(x, list):
            if id(x) in found:
                continue
            found.add(id(x))
            todo.extend(x)
        elif isinstance(x, tuple):
            todo.extend(x)
        elif isinstance(x, dict):
            todo.extend(x.values())
    return found


def merge(envs, graphs, loc, where):
    """Merge the names of the paths' environments (one per graph); returns the merged environment and
    the outputs [(name, shape, dtype, weak)], each path's graph getting its results."""
    merged, outputs = {}, []
    names = list(dict.fromkeys(k for env in envs for k in env))
    results = [[] for _ in graphs]
    for name in names:
        values = [env.get(name, MISSING) for env in envs]
        first = values[0]
        if all(v is first for v in values):
            merged[name] = first
            continue
        if any(v is MISSING or isinstance(v, Undefined) for v in values):
            undefined = next((v for v in values if isinstance(v, Undefined)), None)
            merged[name] = undefined or Undefined(
                name, f"`{name}` is assigned on some paths through the value-dependent `{where[2]}` at line "
                      f"{loc.line} only, so it may not be bound after it",
                f"Assign `{name}` before the `{where[2]}` (or on every path through it).")
            continue
        if all(is_number(v) for v in values) and all(type(v) is type(first) and v == first for v in values):
            merged[name] = first
            continue
        if all(isinstance(v, Value) or is_number(v) for v in values):
            shape, dtype, weak = spec_of(name, values, loc, where)
            for g, v, res in zip(graphs, values, results):
                with building(g):
                    res.append(as_value(v, shape, dtype))
            outputs.append((name, shape, dtype, weak))
            continue
        try:
            same = all(type(v) is type(first) and v == first for v in values)
        except Exception:  # noqa: BLE001 - a comparison the objects do not define
            same = False
        merged[name] = first if same is True else Undefined(
            name, f"`{name}` ({type(first).__name__}) differs between the paths through the value-dependent "
                  f"`{where[2]}` at line {loc.line}: only arrays and numbers may",
            f"Compute `{name}` before the `{where[2]}`, or make it an array.")
    for g, res in zip(graphs, results):
        g.results = res
    return merged, outputs


def build_if(pred, graphs, outputs, loc, guard=None):
    """The `if` region node over the traced branches; returns its outputs, in `outputs` order. A guard
    (the rest of a loop body, run if no `break` or `continue` did) says which flags it tests (explain)."""
    captured, _ = control.close_over(graphs)
    outs = [(shape, dtype, weak, FLAG_NAMES.get(name, name if name != IFEXP else None))
            for name, shape, dtype, weak in outputs]
    attrs = {"bodies": tuple(graphs)}
    if guard:
        attrs["guard"] = tuple(guard)
    node = control.region(control.If, [pred] + captured, attrs, outs)
    return node.outputs


def new_graph() -> Graph:
    return Graph()
