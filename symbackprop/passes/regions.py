"""Dead parts of regions: the outputs of an `if`, `while` or replay nothing reads, and what only they needed.

Dead code elimination keeps a region node whole while any of its outputs is read. After forward mode a
region carries values and their tangents together, and an entry point often reads only the tangents:
a Jacobian by reverse mode reads the tangents of the backward pass, not the gradients along the
cotangent it was seeded with (the cotangent is then no input at all). Here each region drops

- an output nothing reads (a branch result; a loop's carried value whose body result no kept value
  needs; a tape or trip count nothing pops),
- then, inside each body, what only those computed (dead code of the body),
- and an input its bodies no longer read,

repeatedly, outermost regions first and then the bodies' own regions, until nothing changes.
"""
from __future__ import annotations

from ..primitives.control import If, Replay, While
from .dce import eliminate_dead_code


def drop_dead_region_parts(graph, results):
    """Dead code of `graph` (keeping `results`), regions' dead outputs and inputs included."""
    while True:
        eliminate_dead_code(graph, results)
        if not _prune(graph, results):
            return graph


def _prune(graph, results) -> bool:
    read = set(results) | {v for n in graph.nodes for v in n.inputs}
    changed = False
    for node in graph.nodes:
        if node.prim is If:
            changed |= _prune_if(node, read)
        elif node.prim is While:
            changed |= _prune_while(node, read)
        elif node.prim is Replay:
            changed |= _prune_replay(node, read)
    return changed


def _needs(body, values) -> set:
    """`values` and every value of `body` they are computed from (of a region inside it, the inputs the
    outputs needed are computed from, not all its inputs)."""
    need = set(values)
    for node in reversed(body.nodes):
        wanted = [v in need for v in node.outputs]
        if any(wanted):
            need.update(_inputs_needed(node, wanted))
    return need


def _inputs_needed(node, wanted) -> set:
    """The inputs of `node` that its outputs where `wanted` are computed from."""
    if node.prim is If:
        ins = {node.inputs[0]}
        for body in node.attrs["bodies"]:
            need = _needs(body, [r for r, w in zip(body.results, wanted) if w and r is not None])
            ins.update(node.inputs[1 + i] for i, p in enumerate(body.params) if p in need)
        return ins
    if node.prim is While:
        n = node.attrs["carried"]
        cond, body = node.attrs["bodies"]
        tapes = [v for v, out in node.attrs.get("tapes", ()) if wanted[node.outputs.index(out)]]
        needed, need = _carried_needed(node, {i for i in range(n) if wanted[i]}, tapes)
        cond_reads = _reads(cond)
        return {v for k, v in enumerate(node.inputs)
                if ((k in needed) if k < n else (body.params[k] in need or cond.params[k] in cond_reads))}
    if node.prim is Replay:
        m, c = node.attrs["tapes"], node.attrs["carried"]
        (body,) = node.attrs["bodies"]
        needed, need = _adjoints_needed(node, {j for j in range(c) if wanted[j]})
        return {node.inputs[0]} | {v for k, v in enumerate(node.inputs[1:])
                                   if ((k - m in needed) if m <= k < m + c else body.params[k] in need)}
    return set(node.inputs)


def _carried_needed(node, needed, tapes):
    """The carried values (by index) a loop must carry for `needed` ones and the tapes of `tapes`' values,
    and the body values they need: what its condition reads, and what the body reads computing them."""
    n = node.attrs["carried"]
    cond, body = node.attrs["bodies"]
    cond_reads = _reads(cond)
    needed = set(needed) | {i for i in range(n) if cond.params[i] in cond_reads}
    while True:  # a carried value read by the body while computing a needed one is needed
        need = _needs(body, [body.results[i] for i in needed] + list(tapes))
        more = {i for i in range(n) if body.params[i] in need} - needed
        if not more:
            return needed, need
        needed |= more


def _adjoints_needed(node, needed):
    m, c = node.attrs["tapes"], node.attrs["carried"]
    (body,) = node.attrs["bodies"]
    needed = set(needed)
    while True:
        need = _needs(body, [body.results[j] for j in needed])
        more = {j for j in range(c) if body.params[m + j] in need} - needed
        if not more:
            return needed, need
        needed |= more


def _reads(body, extra=()) -> set:
    return {v for n in body.nodes for v in n.inputs} | {r for r in body.results if r is not None} | set(extra)


def _keep(items, drop):
    return [x for k, x in enumerate(items) if k not in drop]


def _body(body, keep) -> bool:
    """Dead code of a body, then of its own regions."""
    before = len(body.nodes)
    eliminate_dead_code(body, keep)
    changed = _prune(body, keep)
    return changed or len(body.nodes) != before


def _prune_if(node, read) -> bool:
    branches = node.attrs["bodies"]
    dead = {k for k, v in enumerate(node.outputs) if v not in read}
    if dead:
        residuals = node.attrs.get("residuals", 0)
        first_residual = len(node.outputs) - residuals
        if residuals:
            node.attrs["residuals"] = residuals - sum(1 for k in dead if k >= first_residual)
        node.outputs = _keep(node.outputs, dead)
        for body in branches:
            body.results = _keep(body.results, dead)
    changed = bool(dead)
    for body in branches:
        changed |= _body(body, [r for r in body.results if r is not None])
    unread = {i for i in range(len(branches[0].params))
              if all(body.params[i] not in _reads(body) for body in branches)}
    if unread:
        node.inputs = node.inputs[:1] + _keep(node.inputs[1:], unread)
        for body in branches:
            body.params = _keep(body.params, unread)
    return changed or bool(unread)


def _prune_while(node, read) -> bool:
    n = node.attrs["carried"]
    cond, body = node.attrs["bodies"]
    changed = False
    tapes = node.attrs.get("tapes", [])
    kept_tapes = [(v, out) for v, out in tapes if out in read]
    if len(kept_tapes) != len(tapes):
        node.attrs["tapes"] = kept_tapes
        changed = True
    count = node.outputs[node.attrs["count"]] if "count" in node.attrs else None
    if count is not None and count not in read:
        del node.attrs["count"]
        count = None
        changed = True
    needed, _ = _carried_needed(node, {i for i in range(n) if node.outputs[i] in read}, [v for v, _ in kept_tapes])
    drop = set(range(n)) - needed
    others = [v for v in node.outputs[n:] if v is count or any(v is out for _, out in kept_tapes)]
    carried = _keep(node.outputs[:n], drop)
    if drop:
        node.inputs = _keep(node.inputs[:n], drop) + node.inputs[n:]
        body.params = _keep(body.params[:n], drop) + body.params[n:]
        cond.params = _keep(cond.params[:n], drop) + cond.params[n:]
        body.results = _keep(body.results, drop)
        node.attrs["carried"] = n = n - len(drop)
        changed = True
    node.outputs = carried + others
    if count is not None:
        node.attrs["count"] = next(k for k, v in enumerate(node.outputs) if v is count)
    changed |= _body(body, list(body.results) + [v for v, _ in kept_tapes])
    changed |= _body(cond, list(cond.results))
    body_reads, cond_reads = _reads(body, [v for v, _ in kept_tapes]), _reads(cond)
    unread = {j for j in range(len(node.inputs) - n)
              if body.params[n + j] not in body_reads and cond.params[n + j] not in cond_reads}
    if unread:
        node.inputs = node.inputs[:n] + _keep(node.inputs[n:], unread)
        body.params = body.params[:n] + _keep(body.params[n:], unread)
        cond.params = cond.params[:n] + _keep(cond.params[n:], unread)
    return changed or bool(unread)


def _prune_replay(node, read) -> bool:
    m, c = node.attrs["tapes"], node.attrs["carried"]
    (body,) = node.attrs["bodies"]
    needed, _ = _adjoints_needed(node, {j for j in range(c) if node.outputs[j] in read})
    drop = set(range(c)) - needed
    changed = bool(drop)
    if drop:
        ins, p = node.inputs, body.params
        node.inputs = ins[:1 + m] + _keep(ins[1 + m:1 + m + c], drop) + ins[1 + m + c:]
        body.params = p[:m] + _keep(p[m:m + c], drop) + p[m + c:]
        body.results = _keep(body.results, drop)
        node.outputs = _keep(node.outputs, drop)
        node.attrs["carried"] = c = c - len(drop)
    changed |= _body(body, list(body.results))
    reads = _reads(body)
    unpopped = {i for i in range(m) if body.params[i] not in reads}
    uncaptured = {j for j in range(len(body.params) - m - c) if body.params[m + c + j] not in reads}
    if unpopped or uncaptured:
        ins, p = node.inputs, body.params
        node.inputs = ins[:1] + _keep(ins[1:1 + m], unpopped) + ins[1 + m:1 + m + c] + _keep(ins[1 + m + c:],
                                                                                             uncaptured)
        body.params = _keep(p[:m], unpopped) + p[m:m + c] + _keep(p[m + c:], uncaptured)
        node.attrs["tapes"] = m - len(unpopped)
        changed = True
    return changed
