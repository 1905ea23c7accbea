"""Value-dependent control flow: structured regions whose bodies are sub-graphs.

A region node runs sub-graphs (`ir.Graph`s with `params` and `results`, in `attrs["bodies"]`)
on its inputs; the frontend builds them (frontend/regions.py) and never unrolls or masks:

    if      inputs [pred, *captured]    bodies: one graph per branch (then, else), each with one
                                        param per captured input and one result per output (None
                                        where a branch leaves undefined a residual that only the
                                        other branch's backward pass reads)
    while   inputs [*init, *captured]   bodies: (condition, body), params [*carried, *captured]; the
                                        condition's result a 0-d bool, the body's the new carried
                                        values. Outputs: the final carried values, then (once reverse
                                        mode asked for them) the trip count and one tape per residual
    replay  a while loop's backward:    inputs [count, *tapes, *adjoints, *captured]; body params
                                        [*popped residuals, *adjoints, *captured], results the
                                        adjoints after one step back; runs `count` times

Reverse mode (the adjoints below) differentiates each body on its own and reads, of the forward
body, only what that derivative reads: for an `if`, the residuals of the branch taken become
outputs of the forward region (the predicate is the record of the branch); for a `while`, each
residual gets a tape, one entry pushed per iteration, and the trip count is recorded.

Forward mode (the tangent rules below) makes the region itself carry the tangents beside the values,
so that nothing is recorded and a loop runs the primal's trip count once, whatever the tangents'
batch axis (a Jacobian's basis). The ports keep each primitive's layout above: an `if` gets a param
per captured input with a tangent (appended, its input the tangent) and a result per float output;
a `while` gets carried tangents after its carried values (`carried` counts them; the condition has a
param for each, unread) and captured tangents after its captured values, and the tangent of a tape
is a tape of the tangent, pushed beside it; a replay pops the tangent tapes after the tapes, carries
the adjoints' tangents after the adjoints and reads captured tangents last. The tangent params and
outputs are named t_<x> (tangent_of). Forward mode's clock (`clock`, `differentiating`) tells a pass
which tangent ports and body nodes are its own or an earlier column's (left alone) and which an
inner derivative made before it (differentiated like any value).
"""
from __future__ import annotations

import contextlib
import itertools
import threading
import weakref

import numpy as np

from ..dtypes import is_float
from ..errors import CompileError
from ..ir import Graph, Node, Value, building, current_graph, current_loc
from . import ops
from .elementwise import fill_value
from .registry import Primitive, primitive


class Tape(Value):
    """A list of one value per loop iteration (its shape and dtype are the entries')."""

    __slots__ = ()


_backprop = None


def use_backprop(fn):
    """Give the region adjoints reverse mode's walk over a graph (transforms/reverse.py installs it:
    the primitives sit below the transform that differentiates their bodies)."""
    global _backprop
    _backprop = fn


def _differentiate(graph, seeds, wrt, live):
    if _backprop is None:  # pragma: no cover - installed when symbackprop.transforms is imported
        raise RuntimeError("reverse mode is not loaded")
    return _backprop(graph, seeds, wrt, live)


_walk = None
#: when each tangent a region's rule made (a body param, a region output) was made: forward mode's clock
_made_at: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_clock = itertools.count(1)
_state = threading.local()  # the forward passes being run, innermost last: when each began


def _since() -> list:
    if not hasattr(_state, "since"):
        _state.since = [float("inf")]  # outside forward mode (reverse mode's walks) no tangent is later
    return _state.since


def use_forward(fn):
    """Give the region tangent rules forward mode's walk over a graph (transforms/forward.py installs it)."""
    global _walk
    _walk = fn


def clock() -> int:
    """Forward mode's clock: a pass that began at time t differentiates what was made before t."""
    return next(_clock)


@contextlib.contextmanager
def differentiating(since):
    """Inside: a forward pass that differentiates the tangents region rules made before `since` (an outer
    derivative of an inner one's tangents), not the ones made since (an earlier column of the same
    Hessian, which no later column reads)."""
    _since().append(since)
    try:
        yield
    finally:
        _since().pop()


def _later(v) -> bool:
    """Whether `v` (a body param, a region output) is a tangent made by this forward pass or an earlier
    column of it: not differentiated again."""
    return v in _made_at and _made_at[v] >= _since()[-1]


def _tangents_in(body, seeds, batch):
    """The tangents of `body`'s nodes for `seeds`, built into the body; its nodes made by a forward pass of
    the same derivative (an earlier column of a Hessian) are not differentiated again, as the outer graph's
    are not."""
    if _walk is None:  # pragma: no cover - installed when symbackprop.transforms is imported
        raise RuntimeError("forward mode is not loaded")
    nodes = _differentiated(body)
    with building(body):
        tangents = _walk(body, seeds, batch, nodes)
    old = set(nodes)
    for n in body.nodes:
        if n not in old:
            body.made_at.setdefault(n, _since()[-1])
    return tangents


def _differentiated(body):
    """The nodes of `body` this forward pass differentiates: all but those an earlier column made."""
    return [n for n in body.nodes if body.made_at.get(n, 0) < _since()[-1]]


def _made(v):
    _made_at[v] = _since()[-1]
    return v


def tangent_param(v, batch):
    """A new body parameter for the tangent of `v` (batch + its shape), named t_<v> in generated code."""
    t = Value(tuple(batch) + v.shape, v.dtype, None, None)
    t.tangent_of, t.weak = v, v.weak and not batch
    return _made(t)


def _tangent_out(node, v, batch):
    t = Value(tuple(batch) + v.shape, v.dtype, node, None)
    t.tangent_of, t.weak = v, v.weak and not batch
    return _made(t)


def _tangent_zeros(v, batch):
    return ops.fill(0.0, tuple(batch) + v.shape, v.dtype)


def _reindex_step(node, inputs, outputs):
    """Keep reverse mode's record of `node`'s adjoint (read by explain) in step with the ports a tangent rule
    gave it: `inputs` and `outputs` name, for each new position, the old index (None: a new tangent port)."""
    step = current_graph().adjoints.get(node)
    if step is None:
        return
    step.wants = tuple(False if k is None else step.wants[k] for k in inputs)
    step.results = tuple(None if k is None else step.results[k] for k in inputs)
    step.gs = tuple(None if k is None or k >= len(step.gs) else step.gs[k] for k in outputs)


def _ports(node, params, ts, offset):
    """The inputs (by index, from `offset`: one per body param) of `node` that are floats with a tangent
    and not a tangent made by this derivative's forward mode."""
    return [k for k, (p, t) in enumerate(zip(params, ts[offset:]))
            if t is not None and is_float(node.inputs[offset + k].dtype) and not _later(p)]


def param_like(v, name=None):
    """A new body parameter standing for `v` inside a region."""
    p = type(v)(v.shape, v.dtype, None, v.name if name is None else name)
    p.weak, p.grad_of, p.zero_sum_axes = v.weak, v.grad_of, v.zero_sum_axes
    return p


def owned(graph) -> set:
    own = set(graph.params)
    for node in graph.nodes:
        own.update(node.outputs)
    return own


def close_over(graphs):
    """The values `graphs` read from outside themselves, in order of first use.

    Each graph gets one new param per such value (appended to its params, in that order) and reads
    it instead, so that a body reads nothing but its params: passes that rewire a region's inputs
    then need not look inside it. Returns (captured values, the new params of each graph).
    """
    captured, seen, owns = [], set(), []
    for g in graphs:
        own = owned(g)
        owns.append(own)
        for v in [v for node in g.nodes for v in node.inputs] + [r for r in g.results if r is not None]:
            if v not in own and v not in seen:
                seen.add(v)
                captured.append(v)
    new = []
    for g in graphs:
        params = [param_like(v) for v in captured]
        swap = dict(zip(captured, params))
        for node in g.nodes:
            if any(v in swap for v in node.inputs):
                node.inputs = [swap.get(v, v) for v in node.inputs]
        g.results = [None if r is None else swap.get(r, r) for r in g.results]
        g.params = list(g.params) + params
        new.append(params)
    return captured, new


def region(prim, inputs, attrs, outs):
    """Append a region node to the graph being built; `outs` are (shape, dtype, weak, name) per output."""
    node = Node(prim, inputs, attrs, current_loc())
    for shape, dtype, weak, name in outs:
        v = Value(shape, dtype, node, name)
        v.weak = weak
        node.outputs.append(v)
    current_graph().nodes.append(node)
    return node


def copy_region(node, inputs):
    """`node` again, reading `inputs`, in the graph being built (an sb.grad function's graph inlined into
    the model calling it): its bodies are shared, its outputs new, its tapes recorded on the new ones."""
    new = Node(node.prim, inputs, node.attrs, current_loc())
    for v in node.outputs:
        out = type(v)(v.shape, v.dtype, new, v.name)
        out.weak, out.grad_of, out.tangent_of = v.weak, v.grad_of, v.tangent_of
        new.outputs.append(out)
    if "tapes" in node.attrs and node.prim is While:
        made = dict(zip(node.outputs, new.outputs))
        new.attrs["tapes"] = [(source, made[out]) for source, out in node.attrs["tapes"]]
    current_graph().nodes.append(new)
    return new


def _zeros(v):
    return ops.fill(0.0, v.shape, v.dtype if v.dtype.kind == "f" else np.float64)


def _as(v, dtype):
    """`v` converted to `dtype` (a gradient that must have one dtype whatever the path: each step of a loop,
    each branch of an `if`)."""
    if v.dtype == dtype:
        return v
    out = ops.astype(v, dtype)
    out.grad_of = v.grad_of
    return out


def _like(v, p):
    return _as(v, p.dtype)


def _reaching(graph, sources, nodes=None) -> set:
    live = set(sources)
    for node in graph.nodes if nodes is None else nodes:
        if any(v in live for v in node.inputs):  # a region's tangents depend on its tangent inputs only
            live.update(v for v in node.outputs if not _later(v))
    return live


def bodies_kept(graph):
    """(body, the values it must keep) for every region body in `graph`, outermost first: its results,
    and for a loop body the values its tapes collect."""
    for node in graph.nodes:
        for k, body in enumerate(node.attrs.get("bodies", ()) if isinstance(node.prim, Region) else ()):
            keep = [r for r in body.results if r is not None]
            if node.prim is While and k == 1:
                keep += [v for v, _ in node.attrs.get("tapes", ())]
            yield body, keep
            yield from bodies_kept(body)


class Region(Primitive):
    """What the region primitives share: bodies, their cost, no rule of their own in shape inference."""

    def infer(self, node):  # region nodes are made with their outputs (region())
        return [(v.shape, v.dtype) for v in node.outputs]

    def flops(self, node) -> int:
        return sum(n.prim.flops(n) for body in node.attrs["bodies"] for n in body.nodes) or 1


@primitive("if")
class If(Region):
    """`if`/`else` on a 0-d boolean: one branch's sub-graph runs."""

    explain_note = "the branch the forward pass took, replayed"

    def describe(self, node):
        return "if"

    def residual(self, node, b, v):
        """The output of `node` that hands branch b's value `v` on to the backward pass."""
        branches = node.attrs["bodies"]
        for k, r in enumerate(branches[b].results):
            if r is v:
                return node.outputs[k]
        for i, body in enumerate(branches):
            body.results.append(v if i == b else None)
        out = type(v)(v.shape, v.dtype, node, v.name)  # a loop's tape in the branch is handed on as a tape
        out.weak = v.weak
        node.outputs.append(out)
        node.attrs["residuals"] = node.attrs.get("residuals", 0) + 1
        return out

    def tangent(self, node, ts, batch):
        """The same `if` computes the tangents beside the values: each branch gets a tangent param per
        captured input that has a tangent, and a tangent result per float output (zeros in a branch where
        the output does not depend on them, None where it is a residual the branch leaves undefined)."""
        ins, branches = node.inputs[1:], node.attrs["bodies"]
        with_t = _ports(node, branches[0].params, ts, 1)
        if not with_t:
            return [None] * len(node.outputs)
        walks = []
        for body in branches:
            params = [tangent_param(body.params[i], batch) for i in with_t]
            walks.append((params, _tangents_in(body, dict(zip([body.params[i] for i in with_t], params)), batch)))
        got = [k for k, v in enumerate(node.outputs) if is_float(v.dtype) and not _later(v) and any(
            body.results[k] is not None and tans.get(body.results[k]) is not None
            for body, (_, tans) in zip(branches, walks))]
        for body, (params, tans) in zip(branches, walks):
            body.params = list(body.params) + params
            with building(body):
                for k in got:
                    r = body.results[k]
                    t = None if r is None else tans.get(r)
                    body.results.append(t if t is not None or r is None else _tangent_zeros(r, batch))
        _reindex_step(node, list(range(len(node.inputs))) + [None] * len(with_t),
                      list(range(len(node.outputs))) + [None] * len(got))
        node.inputs = node.inputs + [ts[1 + i] for i in with_t]
        made = [_tangent_out(node, node.outputs[k], batch) for k in got]
        node.outputs.extend(made)
        result = [None] * len(node.outputs)
        for k, t in zip(got, made):
            result[k] = t
        return result

    def adjoint(self, node, gs, wants):
        ins, branches = node.inputs[1:], node.attrs["bodies"]
        seeds = [(k, g) for k, g in enumerate(gs) if g is not None and fill_value(g) is None]
        constants = [(k, g) for k, g in enumerate(gs) if g is not None and fill_value(g) is not None]
        wanted = [i for i, w in enumerate(wants[1:]) if w]
        backs, grads = [], []
        for body in branches:
            back = Graph()
            back.params = [param_like(g) for _, g in seeds]
            with building(back):  # a constant gradient (the seed 1.0) is a constant inside the branch too
                given = list(zip([k for k, _ in seeds], back.params))
                given += [(k, ops.fill(fill_value(g), g.shape, g.dtype)) for k, g in constants]
                pairs = [(body.results[k], p) for k, p in given if body.results[k] is not None]
                targets = [body.params[i] for i in wanted]
                grads.append(_differentiate(body, pairs, targets, targets))
            backs.append(back)
        got = [j for j in range(len(wanted)) if any(gr[j] is not None for gr in grads)]
        if not got:
            return [None] * len(node.inputs)
        for back, gr in zip(backs, grads):
            with building(back):
                back.results = [gr[j] if gr[j] is not None else _zeros(ins[wanted[j]]) for j in got]
        for k in range(len(got)):  # both branches hand on one dtype, the one NumPy promotes theirs to
            dtype = np.result_type(*[back.results[k].dtype for back in backs])
            for back in backs:
                with building(back):
                    back.results[k] = _as(back.results[k], dtype)
        captured, _ = close_over(backs)
        outer = []
        for v in captured:
            for b, body in enumerate(branches):
                if v in body.params:
                    outer.append(ins[body.params.index(v)])
                    break
                if v in owned(body):
                    outer.append(self.residual(node, b, v))
                    break
            else:  # pragma: no cover - a backward body reads only its forward body
                raise CompileError("internal: a branch's derivative reads a value from outside the branch", node.loc)
        attrs = {"bodies": tuple(backs)}
        outs = [(ins[wanted[j]].shape, backs[0].results[k].dtype, False, None) for k, j in enumerate(got)]
        back_node = region(If, [node.inputs[0]] + [g for _, g in seeds] + outer, attrs, outs)
        result = [None] * len(node.inputs)
        for k, j in enumerate(got):
            out = back_node.outputs[k]
            out.grad_of = ins[wanted[j]]
            result[1 + wanted[j]] = out
        return result


@primitive("while")
class While(Region):
    """`while` on 0-d booleans, with loop-carried values."""

    explain_note = "the iterations the forward pass ran, replayed last first"

    def describe(self, node):
        return "while"

    def count(self, node):
        """The output holding the trip count (made the first time reverse mode asks)."""
        if "count" not in node.attrs:
            out = Value((), np.int64, node, "trips")
            node.outputs.append(out)
            node.attrs["count"] = len(node.outputs) - 1
        return node.outputs[node.attrs["count"]]

    def tape(self, node, v):
        """The output collecting the body's value (or carried param) `v`, one entry per iteration."""
        tapes = node.attrs.setdefault("tapes", [])
        for k, (source, out) in enumerate(tapes):
            if source is v:
                return out
        out = Tape(v.shape, v.dtype, node, None)
        node.outputs.append(out)
        tapes.append((v, out))
        return out

    def tangent(self, node, ts, batch):
        """The same loop carries (value, tangent) pairs, so it runs the primal's trip count: a tangent
        param and result per float carried value that depends on a tangent (by the end of some iteration),
        one per captured input with a tangent; each tape of a residual gets a tape of its tangent, pushed
        alongside (the tangent of the backward pass pops both)."""
        n = node.attrs["carried"]
        cond, body = node.attrs["bodies"]
        nodes = _differentiated(body)
        ports = _ports(node, body.params, ts, 0)
        caps = [k - n for k in ports if k >= n]
        floats = [i for i in range(n) if is_float(body.params[i].dtype) and not _later(body.params[i])]
        live = {body.params[k] for k in ports}
        while True:  # a carried value computed from one with a tangent has one from then on
            reach = _reaching(body, live, nodes)
            more = {body.params[i] for i in floats if body.results[i] in reach} - live
            if not more:
                break
            live |= more
        carried = [i for i in floats if body.params[i] in live]
        if not carried and not caps:
            return [None] * len(node.outputs)
        tps = [tangent_param(body.params[i], batch) for i in carried]
        tcs = [tangent_param(body.params[n + j], batch) for j in caps]
        seeds = dict(zip([body.params[i] for i in carried] + [body.params[n + j] for j in caps], tps + tcs))
        tans = _tangents_in(body, seeds, batch)
        with building(body):
            for i in carried:
                t = tans.get(body.results[i])
                body.results.append(t if t is not None else _tangent_zeros(body.results[i], batch))
        inits = [ts[i] if ts[i] is not None else _tangent_zeros(node.inputs[i], batch) for i in carried]
        tapes = [(source, tape) for source, tape in node.attrs.get("tapes", ())
                 if tans.get(source) is not None and is_float(source.dtype)]
        k, o = len(node.inputs), len(node.outputs)
        _reindex_step(node, [*range(n), *[None] * len(carried), *range(n, k), *[None] * len(caps)],
                      [*range(n), *[None] * len(carried), *range(n, o), *[None] * len(tapes)])
        node.inputs = node.inputs[:n] + inits + node.inputs[n:] + [ts[n + j] for j in caps]
        body.params = body.params[:n] + tps + body.params[n:] + tcs
        unread = [tangent_param(cond.params[i], batch) for i in carried]
        cond.params = cond.params[:n] + unread + cond.params[n:] + [tangent_param(cond.params[n + j], batch)
                                                                    for j in caps]
        made = [_tangent_out(node, node.outputs[i], batch) for i in carried]
        node.outputs = node.outputs[:n] + made + node.outputs[n:]
        node.attrs["carried"] = n + len(carried)
        if "count" in node.attrs:
            node.attrs["count"] += len(carried)
        result = {node.outputs[i]: m for i, m in zip(carried, made)}
        for source, tape in tapes:
            result[tape] = self.tape(node, tans[source])
        return [result.get(v) for v in node.outputs]

    def adjoint(self, node, gs, wants):
        n = node.attrs["carried"]
        _, body = node.attrs["bodies"]
        init, inv = node.inputs[:n], node.inputs[n:]
        floats = [i for i in range(n) if body.params[i].dtype.kind == "f"]
        live = {body.params[n + j] for j, w in enumerate(wants[n:]) if w}
        live |= {body.params[i] for i in floats if wants[i]}
        while True:  # a carried value read by a live one is live from then on
            reach = _reaching(body, live)
            more = {body.params[i] for i in floats if body.results[i] in reach} - live
            if not more:
                break
            live |= more
        results = {r for r in body.results if r is not None}
        # a carried value whose adjoint is zero at the end (no seed) and whose old value the step does not
        # differentiably read (`step = f / f'` in Newton's loop) has a zero adjoint in every step back: not carried
        carried = [i for i in floats if body.params[i] in live
                   and ((gs[i] is not None and fill_value(gs[i]) != 0) or _reaching(body, {body.params[i]}) & results)]
        invs = [j for j, w in enumerate(wants[n:]) if w]
        if not carried and not invs:
            return [None] * len(node.inputs)
        back = Graph()
        adjoints = [param_like(body.params[i], name="") for i in carried]
        accs = [param_like(body.params[n + j], name="") for j in invs]
        for p, i in zip(adjoints, carried):
            p.name, p.grad_of = None, body.params[i]
        for p, j in zip(accs, invs):
            p.name, p.grad_of = None, body.params[n + j]
        back.params = adjoints + accs
        with building(back):
            pairs = [(body.results[i], p) for p, i in zip(adjoints, carried)]
            targets = [body.params[i] for i in carried] + [body.params[n + j] for j in invs]
            grads = _differentiate(body, pairs, targets, live)
            # each adjoint keeps the dtype of the value it is the adjoint of, step after step (a float64
            # cotangent of a float32 carried value is converted once, where it enters the loop)
            new = [_like(g, p) if g is not None else _zeros(body.params[i]) for g, i, p in zip(grads, carried, adjoints)]
            for acc, g in zip(accs, grads[len(carried):]):
                total = acc if g is None else _like(ops.add(acc, g), acc)
                total.grad_of = acc.grad_of
                new.append(total)
        back.results = new
        captured, (params,) = close_over([back])
        popped, tapes, caps, cap_outer = [], [], [], []
        for v, p in zip(captured, params):
            if v in body.params[n:]:
                caps.append(p)
                cap_outer.append(inv[body.params.index(v) - n])
            else:
                popped.append(p)
                tapes.append(self.tape(node, v))
        back.params = popped + adjoints + accs + caps
        seeds = [_like(gs[i], p) if gs[i] is not None else _zeros(init[i]) for i, p in zip(carried, adjoints)]
        seeds += [_zeros(inv[j]) for j in invs]
        for s, i in zip(seeds, carried):
            if s.node is not None and s.name is None and s.grad_of is None:
                s.grad_of = body.params[i]
        for s, j in zip(seeds[len(carried):], invs):
            s.grad_of = inv[j]
        attrs = {"bodies": (back,), "tapes": len(tapes), "carried": len(adjoints) + len(accs)}
        outs = [(p.shape, r.dtype, False, None) for p, r in zip(adjoints + accs, back.results)]
        replay = region(Replay, [self.count(node)] + tapes + seeds + cap_outer, attrs, outs)
        result = [None] * len(node.inputs)
        for k, i in enumerate(carried):
            replay.outputs[k].grad_of = body.params[i]
            if wants[i]:
                result[i] = replay.outputs[k]
        for k, j in enumerate(invs):
            out = replay.outputs[len(carried) + k]
            out.grad_of = inv[j]
            result[n + j] = out
        return result


@primitive("replay")
class Replay(Region):
    """A while loop's backward pass: the recorded trip count of steps back, each popping its residuals."""

    def describe(self, node):
        return "replay"

    def tangent(self, node, ts, batch):
        """The same steps back carry the adjoints' tangents (forward over reverse: a Hessian-vector
        product): each popped residual with a tangent tape pops its tangent alongside."""
        m, c = node.attrs["tapes"], node.attrs["carried"]
        (body,) = node.attrs["bodies"]
        nodes = _differentiated(body)
        ports = _ports(node, body.params, ts, 1)
        popped = [k for k in ports if k < m]
        caps = [k - m - c for k in ports if k >= m + c]
        primal = [j for j in range(c) if not _later(body.params[m + j])]
        live = {body.params[k] for k in ports}
        while True:
            reach = _reaching(body, live, nodes)
            more = {body.params[m + j] for j in primal if body.results[j] in reach} - live
            if not more:
                break
            live |= more
        adjoints = [j for j in range(c) if body.params[m + j] in live]
        if not adjoints:
            return [None] * len(node.outputs)
        tpop = [tangent_param(body.params[i], batch) for i in popped]
        tadj = [tangent_param(body.params[m + j], batch) for j in adjoints]
        tcap = [tangent_param(body.params[m + c + j], batch) for j in caps]
        seeds = dict(zip([body.params[i] for i in popped] + [body.params[m + j] for j in adjoints]
                         + [body.params[m + c + j] for j in caps], tpop + tadj + tcap))
        tans = _tangents_in(body, seeds, batch)
        with building(body):
            for j in adjoints:
                t = tans.get(body.results[j])
                body.results.append(t if t is not None else _tangent_zeros(body.results[j], batch))
        ins = node.inputs
        _reindex_step(node, [*range(1 + m), *[None] * len(popped), *range(1 + m, 1 + m + c), *[None] * len(adjoints),
                             *range(1 + m + c, len(ins)), *[None] * len(caps)],
                      [*range(c), *[None] * len(adjoints)])
        starts = [ts[1 + m + j] if ts[1 + m + j] is not None else _tangent_zeros(ins[1 + m + j], batch)
                  for j in adjoints]
        node.inputs = ([ins[0]] + ins[1:1 + m] + [ts[1 + i] for i in popped] + ins[1 + m:1 + m + c] + starts
                       + ins[1 + m + c:] + [ts[1 + m + c + j] for j in caps])
        p = body.params
        body.params = p[:m] + tpop + p[m:m + c] + tadj + p[m + c:] + tcap
        node.attrs["tapes"], node.attrs["carried"] = m + len(popped), c + len(adjoints)
        made = [_tangent_out(node, node.outputs[j], batch) for j in adjoints]
        node.outputs.extend(made)
        result = [None] * len(node.outputs)
        for t, j in zip(made, adjoints):
            result[j] = t
        return result

    def adjoint(self, node, gs, wants):
        raise CompileError("the derivative of the backward pass of a `while` on array values (a second "
                           "derivative through it, by reverse mode) is not supported", node.loc,
                           "For second derivatives use sb.hvp or sb.hessian (forward mode over the gradient, which "
                           "goes through the loop), or sb.jvp of the sb.grad function.")
