"""Reverse mode: walk the forward graph backwards, applying each primitive's adjoint rule.

Only values that depend on a `wrt` parameter get gradients, and a rule is asked
only for the inputs that need one: no dead adjoints are built. Contributions to
one value are summed; index adjoints into one array become a single scatter-add.

Each adjoint applied is recorded on the graph (`AdjointStep`): what it read, what it
returned and which backward nodes it appended, so that explain can print the
adjoint that was emitted rather than derive it again.
"""
from __future__ import annotations

import numpy as np

from ..dtypes import is_float
from ..errors import CompileError
from ..ir import at, building, current_graph, current_loc
from ..primitives import control, ops
from ..primitives.elementwise import fill_value
from ..primitives.index import ScatterAdd, scatter_add


class AdjointStep:
    """One forward node's adjoint as reverse applied it.

    `gs` are the incoming gradients (one per output the node had then, None where none
    arrived: a kernel's adjoint appends outputs for the residuals it keeps), `wants` the
    inputs asked for, `results` what the adjoint returned for each input (None: no
    gradient), `nodes` the backward nodes it appended, in order (a node it asked for that
    already existed is shared, not appended). The seed d_loss = 1 and the sums of several
    contributions to one value are appended by reverse itself and belong to no step.
    """

    __slots__ = ("node", "gs", "wants", "results", "nodes")

    def __init__(self, node, gs, wants, results, nodes):
        self.node, self.gs, self.wants, self.results, self.nodes = node, gs, wants, results, nodes

    def feeds(self, i) -> list:
        """The appended nodes that input i's gradient is computed from, in order."""
        own, reached = set(self.nodes), set()
        r = self.results[i]
        stack = [r.node] if r is not None and r.node in own else []
        while stack:
            n = stack.pop()
            if n not in reached:
                reached.add(n)
                stack.extend(v.node for v in n.inputs if v.node in own)
        return [n for n in self.nodes if n in reached]

    def inputs_of(self, node) -> tuple:
        """The inputs whose gradient the appended `node` is part of."""
        return tuple(i for i in range(len(self.results)) if node in self.feeds(i))


def depends_on(graph, sources):
    """Every value computed from `sources`."""
    live = set(sources)
    for node in graph.nodes:
        if any(v in live for v in node.inputs):
            live.update(node.outputs)
    return live


def _total(contributions, like, forward_nodes=()):
    """Sum the gradient contributions to one value (None when there are none)."""
    parts = [c for c in contributions if c is not None and fill_value(c) != 0.0]
    if not parts:
        return None
    scatters = [c for c in parts if c.node is not None and c.node.prim is ScatterAdd]
    if len(scatters) > 1:
        merged = []
        for c in scatters:
            merged.extend(zip(c.node.attrs["indexes"], c.node.inputs))
        merged_ids = {id(c) for c in scatters}
        parts = [c for c in parts if id(c) not in merged_ids]
        parts.append(scatter_add(like.shape, scatters[0].dtype, merged))
    total = parts[0]
    for p in parts[1:]:
        total = ops.add(total, p)
    if total.name is None and total.grad_of is None and total.node is not None \
            and total.node not in forward_nodes:
        total.grad_of = like
    if all(p.zero_sum_axes for p in parts):
        total.zero_sum_axes = frozenset.intersection(*(p.zero_sum_axes for p in parts))
    return total


def reverse(graph, wrt, seed=None, nodes=None, result=None):
    """Extend `graph` with the backward pass; return the gradient Value of each `wrt` param.

    `seed` is the result's incoming gradient (a cotangent of its shape: sb.vjp); d_loss = 1 by default.
    `nodes` and `result` (default: the whole graph and its result) differentiate a part of the graph:
    an sb.grad function called inside a model, while the model is traced."""
    result = graph.result if result is None else result
    with building(graph):
        seeds = [(result, seed if seed is not None else ops.fill(1.0, (), result.dtype))]
        found = backprop(graph, seeds, wrt, wrt, nodes)
        grads = []
        for p, g in zip(wrt, found):
            if g is None:
                g = ops.fill(0.0, p.shape, p.dtype if is_float(p.dtype) else np.float64)
            grads.append(g)
    return grads


def backprop(graph, seeds, wrt, sources, nodes=None):
    """The adjoints of `graph`'s nodes (or of `nodes`, a part of it), last first, appended to the graph
    being built (`graph` itself, or the backward body of a region, primitives/control.py).

    `seeds` are (value, incoming gradient) pairs; only values computed from `sources` get adjoints.
    Returns the gradient of each `wrt` value, None where none arrived.
    """
    into = current_graph()
    live = depends_on(graph, sources)
    forward = list(graph.nodes if nodes is None else nodes)
    forward_nodes = set(forward)
    adjoints: dict = {}
    for v, g in seeds:
        if v in live:
            adjoints.setdefault(v, []).append(g)
    for node in reversed(forward):
        if not any(v in adjoints for v in node.outputs):
            continue
        with at(node.loc):
            gs = [_total(adjoints.pop(v, []), v, forward_nodes) for v in node.outputs]
        if all(g is None for g in gs):
            continue
        wants = [v in live and (is_float(v.dtype) or v in wrt) for v in node.inputs]
        if not any(wants):
            continue
        with at(node.loc):
            first = len(into.nodes)
            results = node.prim.adjoint(node, gs, wants)
            if len(results) != len(node.inputs):
                raise CompileError(f"internal: adjoint of {node.prim.name} gave {len(results)} gradients",
                                   node.loc)
            for v, want, r in zip(node.inputs, wants, results):
                if want and r is not None:
                    if r.shape != v.shape:
                        raise CompileError(f"internal: gradient of shape {r.shape} for a value of shape "
                                           f"{v.shape} in {node.prim.name}", node.loc)
                    if r.name is None and r.grad_of is None and r.node not in forward_nodes:
                        r.grad_of = v
                    adjoints.setdefault(v, []).append(r)
        step = AdjointStep(node, tuple(gs), tuple(wants), tuple(results), into.nodes[first:])
        graph.adjoints[node] = step
        for n in step.nodes:
            into.provenance[n] = step
    grads = []
    for p in wrt:
        parts = adjoints.get(p, [])
        with at(parts[-1].node.loc if parts and parts[-1].node is not None else current_loc()):
            grads.append(_total(parts, p, forward_nodes))
    return grads


control.use_backprop(backprop)
