"""Value-dependent `if` and `while` as Python `if`, `while` and `for` statements, the tape as lists.

The forward pass of a region node is written where it stands; its backward region (the `if` on the
same predicate, or the replay of a loop) where reverse mode put it:

    cond = np.sum(x) > 0.0                      # if on a value: the predicate is the record
    if cond:                                    # model.py:7
        y = y*2                                 # model.py:8
    ...
    h_tape = []                                 # a loop: one list per residual its backward reads
    trips = 0
    while np.abs(dx) > tol:                     # model.py:9
        h_tape.append(h)
        ...
        trips += 1
    ...
    for _ in range(trips):                      # the backward pass, last iteration first
        h_1 = h_tape.pop()
        ...

A body's parameters are written as the names of what its region reads; its results are computed
straight into the names its region's outputs get (a loop's carried names stay the same name through
the loop), or assigned at the end of the body, all at once (`a, b = b, a + b`), where computing one
in place would overwrite a value the body still reads. An inlined view (`a[:2]` written where it is read)
counts as a read of its source there. An adjoint that the replay starts as zeros and every step back sets
to zeros again (the carried value is overwritten, never read, by the loop's body) is left as it is.
"""
from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np

from ...primitives.control import If, Replay, Tape, While
from ...primitives.elementwise import Fill, fill_value
from .printer import MathPrinter, float_literal
from .context import COMMENT_COLUMN, current_writer, with_comment

_ASSIGNMENT = re.compile(r"^(\w+) = (.*?)(\s+# .*)?$")
INDENT = "    "


class Scope:
    """The nodes being written at one level, for asking whether a value is read after a node."""

    def __init__(self, nodes, kept=(), inlined=()):
        self.position = {n: i for i, n in enumerate(nodes)}
        self.last: dict = {}
        for i, n in enumerate(nodes):
            for v in n.inputs:
                self.last[v] = i
        for n in reversed(nodes):  # a view written inline is read where its reader is
            if n.outputs and n.outputs[0] in inlined and n.outputs[0] in self.last:
                for v in n.inputs:
                    self.last[v] = max(self.last[v], self.last[n.outputs[0]])
        self.kept = set(kept)

    def read_after(self, v, node) -> bool:
        return v in self.kept or self.last.get(v, -1) > self.position.get(node, len(self.position))


def literal(writer, v):
    """How a region writes `v`: a constant's literal in the value's own type (True, 0), else its name."""
    node = v.node
    if node is not None and node.prim is Fill and v.shape == ():
        x = node.attrs["value"]
        if v.dtype.kind == "b":
            return repr(bool(x))
        if v.dtype.kind in "iu":
            return repr(int(x))
        if v.dtype != np.float64 and writer.printer_cls is not MathPrinter:
            return f"np.{v.dtype}({float_literal(x)})"  # a Python float would widen what it meets in a loop
    return writer.arg(v)


_COMMENTED = re.compile(r"^(.*?)\s+(# [^#]*:\d+)$")


def _indent(lines):
    """The lines one level in, their comments kept in the comment column."""
    out = []
    for line in lines:
        m = _COMMENTED.match(line)
        if m and not m.group(1).lstrip().startswith("#"):
            code = INDENT + m.group(1)
            out.append(f"{code}{' ' * max(COMMENT_COLUMN - len(code), 2)}{m.group(2)}")
        else:
            out.append(INDENT + line)
    return out


def _assign_all(pairs):
    """One statement assigning every (target, source) pair at once (sources read before any is written)."""
    pairs = [(t, s) for t, s in pairs if t != s]
    if not pairs:
        return []
    return [f"{', '.join(t for t, _ in pairs)} = {', '.join(s for _, s in pairs)}"]


def _base(text):
    return re.sub(r"_\d+$", "", text)


def _reusable(writer, node, out, v, text, claimed) -> bool:
    """Whether a region's output may take the name of `v`, its input: the same variable (or the gradient
    of the same), and nothing reads `v` after the region."""
    scope = writer.scopes[-1] if writer.scopes else None
    own = out.name or (f"d_{writer.name(out.grad_of)}" if out.grad_of is not None else
                       f"t_{writer.name(out.tangent_of)}" if out.tangent_of is not None else None)
    return (scope is not None and own is not None and text.isidentifier() and _base(text) == _base(own)
            and text not in claimed and sum(1 for x in node.inputs if x is v) == 1
            and not scope.read_after(v, node))


def body_lines(writer, graph, bind, targets, extra_keep=(), undefined=None):
    """The statements of a body and the assignments ending it.

    `bind` names the body's params; result k is written into `targets[k]` (None: left where it is
    computed); a result the body does not define gets `undefined` (None inside a loop, where the tape
    pushes it) or nothing.
    """
    for p, text in bind.items():
        writer.names[p] = text
    nodes = graph.nodes
    results = [r for r in graph.results if r is not None]
    keep = results + list(extra_keep)
    inlinable = writer.inlinable_views(nodes, keep) - {v for n in nodes if n.attrs.get("bodies") for v in n.inputs}
    scope = Scope(nodes, keep, inlinable)
    last = dict(scope.last)
    for r in results:
        if r.node is None or r.node not in scope.position:
            last[r] = len(nodes)  # a param handed on is read by the assignments at the end
    by_text: dict = {}
    for p, text in bind.items():
        by_text.setdefault(text, []).append(p)
    direct = set()  # the results computed straight into their targets, by position (one value may be two results)
    for k, (r, target) in enumerate(zip(graph.results, targets)):
        if r is None or target is None or r in writer.names or r in inlinable or r.node not in scope.position:
            continue
        if r.node.prim is Fill and r.shape == ():
            continue  # a number, written where it is assigned
        i = scope.position[r.node]
        single = len(r.node.outputs) == 1
        if any(last.get(p, -1) > i or (last.get(p, -1) == i and not single) for p in by_text.get(target, ())):
            continue  # computing it in place would overwrite a value the body still reads
        writer.names[r] = target
        direct.add(k)
    writer.scopes.append(scope)
    try:
        statements = writer.statements(nodes, inlinable)
    finally:
        writer.scopes.pop()
    ending = []
    for k, (r, target) in enumerate(zip(graph.results, targets)):
        if target is None or k in direct:
            continue
        if r is None:
            if undefined is not None:
                ending.append((target, undefined))
            continue
        ending.append((target, literal(writer, r)))
    return statements, _assign_all(ending)


def write_region(node, args):
    """The statements of a region node (its rule in the NumPy backend)."""
    writer = current_writer()
    return {If: _write_if, While: _write_while, Replay: _write_replay}[node.prim](writer, node, args)


def _with_comment(line, node):
    return with_comment(line, node.loc)


def _names(writer, node, outputs, candidates):
    """The name of each output: an input's it replaces (candidates[k], when nothing reads that input
    later), or its own."""
    names, claimed = [], set()
    for out, options in zip(outputs, candidates):
        name = writer.names.get(out)  # the name of the enclosing body's result it is computed into
        for v, text in options if name is None else ():
            if _reusable(writer, node, out, v, text, claimed):
                name = text
                break
        if name is None:
            name = writer.name(out)
        claimed.add(name)
        writer.names[out] = name
        names.append(name)
    return names


def _write_if(writer, node, args):
    pred, captured = args[0], node.inputs[1:]
    branches = node.attrs["bodies"]
    candidates = []
    for k in range(len(node.outputs)):
        options = []
        for body in branches:
            r = body.results[k]
            if r is not None and r in body.params:
                j = body.params.index(r)
                options.append((captured[j], args[1 + j]))
        candidates.append(options)
    for k, out in enumerate(node.outputs):  # a loop's tape a branch hands on: named as the loop names its tapes
        tape = next((b.results[k] for b in branches if isinstance(b.results[k], Tape)), None)
        if tape is not None and out not in writer.names:
            source = next((v for v, t in tape.node.attrs.get("tapes", ()) if t is tape), None)
            base = source.name if source is not None and source.name else "t"
            writer.names[out] = writer.fresh(f"{base}_tape")
    targets = _names(writer, node, node.outputs, candidates)
    texts = []
    for body in branches:
        statements, ending = body_lines(writer, body, dict(zip(body.params, args[1:])), targets,
                                        undefined="None" if writer.loops else None)
        texts.append(statements + ending)
    then, other = texts
    probe = _probe(writer, node)
    recorded = [f"record({probe}, {pred})"] if probe is not None else []
    if not then and not other:
        return recorded
    if not then:
        return recorded + [_with_comment(f"if not {pred}:", node)] + _indent(other)
    lines = recorded + [_with_comment(f"if {pred}:", node)] + _indent(then)
    if other:
        lines += ["else:"] + _indent(other)
    return lines


def _probe(writer, node):
    """The number explain's probe gives `node` (a forward region), or None: generated code has no probes."""
    return writer.probes.get(node) if writer.probes else None


def _write_while(writer, node, args):
    n = node.attrs["carried"]
    cond, body = node.attrs["bodies"]
    inits, captured = node.inputs[:n], args[n:]
    targets = _names(writer, node, node.outputs[:n], [[(v, t)] for v, t in zip(inits, args[:n])])
    lines = _assign_all([(t, literal(writer, v)) for t, v in zip(targets, inits)])
    tapes = node.attrs.get("tapes", [])
    bind = dict(zip(cond.params, targets + captured))
    writer.loops += 1
    try:
        test, _ = body_lines(writer, cond, bind, [None])
        go = literal(writer, cond.results[0])
        statements, ending = body_lines(writer, body, dict(zip(body.params, targets + captured)), targets,
                                        extra_keep=[v for v, _ in tapes])
    finally:
        writer.loops -= 1
    pushed_first, pushed_last = [], []
    for source, tape in tapes:
        base = writer.names.get(source, "t")
        name = writer.names.get(tape)  # the name of the branch result it is made into (a loop inside an `if`)
        if name is None:
            writer.names[tape] = name = writer.fresh(f"{base}_tape" if base.isidentifier() else "tape")
        lines.append(f"{name} = []")
        push = f"{name}.append({writer.arg(source)})"
        (pushed_first if source in body.params else pushed_last).append(push)
    count = writer.name(node.outputs[node.attrs["count"]]) if "count" in node.attrs else None
    probe = _probe(writer, node)
    if count is None and probe is not None:  # explain counts the iterations reverse mode did not need
        count = writer.fresh("trips")
    if count is not None:
        lines.append(f"{count} = 0")
    head = test and _ASSIGNMENT.match(test[0])
    if not test:
        lines.append(_with_comment(f"while {go}:", node))
        inner = []
    elif len(test) == 1 and head and head.group(1) == go:
        lines.append(_with_comment(f"while {head.group(2)}:", node))
        inner = []
    else:
        lines.append(_with_comment("while True:", node))
        inner = test + [f"if not {go}:", INDENT + "break"]
    inner += pushed_first + statements + pushed_last + ending
    if count is not None:
        inner.append(f"{count} += 1")
    return lines + _indent(inner or ["pass"]) + ([f"record({probe}, {count})"] if probe is not None else [])


def steady_adjoints(node):
    """The replay's body without the resets of adjoints that hold one constant throughout: seeded with a
    fill (zeros) that every step back sets again (the adjoint of a carried value the body never reads,
    Newton's `step`), read by nothing else in the body. Returns (body, their positions)."""
    c = node.attrs["carried"]
    m = node.attrs["tapes"]
    (body,) = node.attrs["bodies"]
    seeds = node.inputs[1 + m:1 + m + c]
    read = {v for n in body.nodes for v in n.inputs}
    steady = set()
    for k, (seed, r) in enumerate(zip(seeds, body.results)):
        if (r is not None and r not in read and fill_value(seed) is not None and fill_value(r) == fill_value(seed)
                and (r.shape, r.dtype) == (seed.shape, seed.dtype) and sum(x is r for x in body.results) == 1):
            steady.add(k)
    if not steady:
        return body, steady
    dropped = {body.results[k].node for k in steady}
    return SimpleNamespace(params=body.params, nodes=[n for n in body.nodes if n not in dropped],
                           results=[None if k in steady else r for k, r in enumerate(body.results)]), steady


def _write_replay(writer, node, args):
    m, c = node.attrs["tapes"], node.attrs["carried"]
    (body,) = node.attrs["bodies"]
    count, tapes, seeds, captured = args[0], args[1:1 + m], node.inputs[1 + m:1 + m + c], args[1 + m + c:]
    targets = _names(writer, node, node.outputs, [[(v, t)] for v, t in zip(seeds, args[1 + m:1 + m + c])])
    lines = _assign_all([(t, literal(writer, v)) for t, v in zip(targets, seeds)])
    popped, adjoints, params = body.params[:m], body.params[m:m + c], body.params[m + c:]
    bind = dict(zip(adjoints, targets)) | dict(zip(params, captured))
    pops = [f"{writer.name(p)} = {tape}.pop()" for p, tape in zip(popped, tapes)]
    body, steady = steady_adjoints(node)  # zeros from the start stay zeros: not reset every step back
    writer.loops += 1
    try:
        statements, ending = body_lines(writer, body, bind,
                                        [None if k in steady else t for k, t in enumerate(targets)])
    finally:
        writer.loops -= 1
    if not pops and not statements and not ending:
        return lines  # each step back leaves the adjoints as they are
    lines.append(_with_comment(f"for _ in range({count}):", node))
    return lines + _indent(pops + statements + ending)
