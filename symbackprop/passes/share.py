"""Common subexpressions across kernels: a value computed in one kernel is read, not computed again, by the next.

Fusion and each kernel's own CSE (finalize) share work inside one kernel. A program built from several
derivatives of one model, forward over reverse (hvp, hessian) or a jvp's tangents beside the forward,
repeats work across kernels: the tanh kernel's tangent needs `1 - h**2`, and so does the backward
kernel's tangent; `h**2` of the loss is the `h**2` of both. Here the bodies of all kernels, over the
arrays they read, go through one `sympy.cse`; a subexpression that two or more kernels need becomes an
output of the first of them (or is that kernel's output already), and the later ones read it.

What counts as worth an array of its own is the backend's: NumPy computes every operation as a pass
over memory, so sharing anything saves a pass; a backend fusing whole chains into loops recomputes
arithmetic in registers for less than storing and loading it, and shares only subexpressions holding
a transcendental (or other library) function.
"""
from __future__ import annotations

import numpy as np
import sympy

from ..ir import Value
from ..primitives import scalar
from ..primitives.elementwise import Kernel, arg, expand, is_bool_expr, kernel_dtype, operand_dtypes
from .dce import eliminate_dead_code, replace_uses

#: functions as cheap as arithmetic in a compiled loop
_CHEAP = (scalar.where, scalar.maximum, scalar.minimum, scalar.absolute, scalar.sign) + scalar.BOOL_FUNCTIONS


def everything(expr) -> bool:
    """Sharing policy of a backend computing one operation per pass (NumPy): every repeated operation."""
    return True


def transcendental(expr) -> bool:
    """Sharing policy of a backend fusing loops: only what costs more than arithmetic (exp, tanh, sqrt...)."""
    for e in sympy.preorder_traversal(expr):
        if isinstance(e, sympy.Function) and not isinstance(e, _CHEAP):
            return True
        if e.is_Pow and not e.exp.is_Integer:
            return True
    return False


def _candidate(node) -> bool:
    """A kernel taking part: float outputs of one dtype, no input widened to it (a body of float32 arrays
    declared float64 computes in float64 from the start: a subexpression of it is not float32's)."""
    if node.prim is not Kernel:
        return False
    dtypes = {v.dtype for v in node.outputs}
    if len(dtypes) != 1:
        return False
    (dtype,) = dtypes
    return dtype.kind == "f" and not any(
        v.dtype.kind == "f" and not v.weak and v.dtype.itemsize < dtype.itemsize for v in node.inputs)


def share_across_kernels(graph, keep=(), worth=everything):
    """Compute once what several kernels compute: see the module's docstring. `keep` are the results."""
    kernels = [n for n in graph.nodes if _candidate(n)]
    if len(kernels) < 2:
        return graph
    symbol_of, value_of = {}, {}

    def symbol(v):
        if v not in symbol_of:
            s = sympy.Symbol(f"v{len(symbol_of)}", real=True)
            symbol_of[v], value_of[s] = s, v
        return symbol_of[v]

    # each kernel's outputs over the arrays it reads; a part an earlier kernel holds as an output reads
    # that output (when the output is worth reading), and a part that is another output of the same
    # kernel is written as that output (`sin(exp(z))` beside the residual `exp(z)` is sin(t1)), so that
    # the tangent kernel reading t1 and the forward one computing sin(t1) are seen to share sin(t1)
    known, bodies, own, contracted = {}, [], {}, set()
    for i, node in enumerate(kernels):
        glob = {arg(j): symbol(v) for j, v in enumerate(node.inputs)}
        raw = [e.xreplace(glob) for e in expand(node.attrs["program"], node.attrs["outs"])]
        body = [e.xreplace(known) for e in raw] if known else raw
        if body != raw:
            contracted.add(i)
        mine = {}
        for k, e in enumerate(body):
            if not e.is_Atom and e not in mine:
                mine[e] = symbol(node.outputs[k])
                own[symbol(node.outputs[k])] = (i, e)
        bodies.append([e.xreplace({E: s for E, s in mine.items() if E != e}) for e in body])
        for k, (r, e) in enumerate(zip(raw, body)):
            v = node.outputs[k]
            if not e.is_Atom and e.free_symbols and _shape(e, value_of) == v.shape and worth(e):
                known.setdefault(r, symbol(v))
                known.setdefault(e, symbol(v))
    flat = [e for body in bodies for e in body]
    repl, reduced = sympy.cse(flat, symbols=sympy.numbered_symbols("s", real=True), optimizations=None,
                              order="none")
    defs = dict(repl)
    reduced_of, k = [], 0
    for body in bodies:
        reduced_of.append(reduced[k:k + len(body)])
        k += len(body)

    # which temps each kernel needs, deciding from the outermost temp inwards where each is computed
    needs = [set().union(*(e.free_symbols for e in outs)) & defs.keys() for outs in reduced_of]
    hosted = {}   # temp -> the kernel (index) computing it for the others
    readers = {}  # temp -> the kernels (indexes) reading it from there
    for t, body in reversed(repl):
        users = [i for i in range(len(kernels)) if t in needs[i]]
        place = _host(body, users, kernels, defs, value_of, worth) if len(users) > 1 else None
        if place is not None:
            hosted[t], readers[t] = place[0], set(place[1])
        for i in users:
            if i not in readers.get(t, ()):
                needs[i] |= body.free_symbols & defs.keys()

    if not hosted and not contracted:
        return graph
    # the host's Value: an output that is the temp itself, else a new output
    held, new_outputs = {}, {}
    for t, host in hosted.items():
        node = kernels[host]
        same = [j for j, e in enumerate(reduced_of[host]) if e == t]
        if same:
            held[t] = node.outputs[same[0]]
        else:
            held[t] = Value(node.attrs["shape"], node.outputs[0].dtype, node)
            new_outputs.setdefault(host, []).append(t)

    def full(e, i):
        """`e` over arrays, for kernel i: hosted temps it reads are their Values, other temps and the
        kernel's own outputs their bodies."""
        sub = {}
        for s in e.free_symbols:
            if s in defs:
                sub[s] = symbol(held[s]) if i in readers.get(s, ()) else full(defs[s], i)
            elif s in own and own[s][0] == i:
                sub[s] = full(own[s][1], i)
        return e.xreplace(sub) if sub else e

    changed = {i for t in hosted for i in readers[t]} | set(new_outputs) | contracted
    for i in sorted(changed):
        outs = [full(e, i) for e in reduced_of[i]]
        extra = [(t, full(defs[t], i)) for t in new_outputs.get(i, [])]
        _rewrite(kernels[i], outs, extra, held, symbol, value_of)

    # a kernel output that is now a read of another kernel's value: its readers read that value
    results, emptied = set(keep), set()
    for i in sorted(changed):
        node = kernels[i]
        for j in reversed(range(len(node.outputs))):
            e = node.attrs["outs"][j]
            if e.is_Symbol and node.outputs[j] not in results:
                replace_uses(graph, node.outputs[j], node.inputs[int(e.name[1:])])
                node.attrs["outs"] = node.attrs["outs"][:j] + node.attrs["outs"][j + 1:]
                del node.outputs[j]
        if not node.outputs:
            emptied.add(node)
        else:
            _prune_inputs(node)
    graph.nodes = [n for n in graph.nodes if n not in emptied]
    eliminate_dead_code(graph, list(keep))
    return graph


def _shape(e, value_of):
    """The shape NumPy gives `e` over the arrays its symbols stand for."""
    return tuple(np.broadcast_shapes(*(value_of[s].shape for s in e.free_symbols)))


def _host(body, users, kernels, defs, value_of, worth):
    """Where the temp defined by `body` is computed for the other `users`, and which of them read it
    there: (host, readers), or None to leave it computed by each."""
    free = _arrays(body, defs)
    if not free or all(value_of[s].weak for s in free):
        return None
    expanded = _expanded(body, defs)
    if is_bool_expr(expanded) or not worth(expanded):
        return None
    shape = tuple(np.broadcast_shapes(*(value_of[s].shape for s in free)))
    users = sorted(users, key=lambda i: i)
    for n, host in enumerate(users):
        node = kernels[host]
        if node.attrs["shape"] != shape:
            continue
        later = users[n + 1:]
        if not later:
            return None
        dtypes = [None if value_of[s].weak else value_of[s].dtype for s in sorted(free, key=str)]
        local = expanded.xreplace({s: arg(k) for k, s in enumerate(sorted(free, key=str))})
        if kernel_dtype(local, dtypes) != node.outputs[0].dtype:
            return None
        return host, later
    return None


def _arrays(e, defs):
    out, stack, seen = set(), list(e.free_symbols), set()
    while stack:
        s = stack.pop()
        if s in seen:
            continue
        seen.add(s)
        if s in defs:
            stack.extend(defs[s].free_symbols)
        else:
            out.add(s)
    return out


def _expanded(e, defs):
    sub = {s: _expanded(defs[s], defs) for s in e.free_symbols if s in defs}
    return e.xreplace(sub) if sub else e


def _rewrite(node, outs, extra, held, symbol, value_of):
    """Give `node` the bodies `outs` (and the new outputs `extra`) over arrays, read through new inputs."""
    old_inputs = list(node.inputs)
    old_glob = {arg(i): symbol(v) for i, v in enumerate(old_inputs)}
    exprs = list(outs) + [e for _, e in extra]
    used = set().union(*(e.free_symbols for e in exprs))
    inputs = [v for v in old_inputs if symbol(v) in used]
    inputs += sorted((value_of[s] for s in used if value_of[s] not in inputs), key=lambda v: str(symbol(v)))
    local = {symbol(v): arg(k) for k, v in enumerate(inputs)}
    names = []
    for name, e in node.attrs["names"]:
        g = e.xreplace(old_glob)
        if g.free_symbols <= local.keys():
            names.append((name, g.xreplace(local)))
    node.inputs = inputs
    node.attrs["outs"] = tuple(e.xreplace(local) for e in exprs)
    node.attrs["program"] = ()
    node.attrs["names"] = tuple(names)
    for t, _ in extra:
        node.outputs.append(held[t])


def _prune_inputs(node):
    """Drop the inputs no output of `node` reads any more, renumbering the rest."""
    exprs = list(node.attrs["outs"])
    used = set().union(*(e.free_symbols for e in exprs))
    keep = [i for i in range(len(node.inputs)) if arg(i) in used]
    if len(keep) == len(node.inputs):
        return
    renumber = {arg(i): arg(k) for k, i in enumerate(keep)}
    node.inputs = [node.inputs[i] for i in keep]
    node.attrs["outs"] = tuple(e.xreplace(renumber) for e in exprs)
    node.attrs["names"] = tuple((n, e.xreplace(renumber)) for n, e in node.attrs["names"]
                                if e.free_symbols <= renumber.keys())
