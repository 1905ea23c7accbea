"""Forward mode: walk the graph in order, applying each primitive's tangent rule.

Seeds give the tangent of some values (a jvp's tangent inputs, a Hessian's basis);
each node whose inputs carry a tangent gets the tangents of its outputs from its
primitive's `tangent` rule, beside its adjoint in the primitive's file. Only
values that depend on a seed get a tangent (None is zero: no dead tangents are
built). The graph may already hold a backward pass (reverse mode's): its nodes
are differentiated like any other, which is how forward-over-reverse gives
Hessian-vector products.

A tangent carries `batch` leading axes of its own: () for one direction, (n,)
for n directions at once (a Jacobian's or Hessian's basis), through one program.

graph.tangent_origin records, for each node a tangent rule built, the node whose tangent it is: the
pipeline counts the tangents of forward values as part of the forward pass (a forward-over-reverse
program is the forward pass with its tangents, then the backward pass with its). graph.tangent_passes
keeps each call's seeds and tangents, for explain's table of tangent rules.

A value-dependent `if` or `while` (primitives/control.py) is one node whose rule gives the node
itself the tangents' ports and walks its bodies with `walk`; the node then reads tangents built after
it, and the nodes are put back in an order that computes each value before it is read.
"""
from __future__ import annotations

from ..dtypes import is_float
from ..errors import CompileError
from ..ir import at, bodies, building, current_graph
from ..primitives import control


def forward(graph, seeds, batch=(), nodes=None):
    """Append the tangent computation for `seeds` ({value: its tangent}) to `graph`; return the map
    from each value that depends on a seed to its tangent (shape batch + the value's shape).
    `nodes` are the nodes differentiated (default: all of the graph's now)."""
    since = nodes.since if isinstance(nodes, Snapshot) else control.clock()
    with building(graph), control.differentiating(since):
        tangents = walk(graph, seeds, batch, nodes)
    graph.tangent_passes.append((dict(seeds), tangents))
    return tangents


class Snapshot(list):
    """The nodes of a graph before several forward passes over them (a Jacobian's or Hessian's columns):
    no pass differentiates what an earlier one built, inside a region's body either (`since`)."""

    def __init__(self, nodes, since):
        super().__init__(nodes)
        self.since = since


def snapshot(graph) -> Snapshot:
    return Snapshot(graph.nodes, control.clock())


def walk(graph, seeds, batch=(), nodes=None):
    """The tangents of `graph`'s nodes (or of `nodes`, a part of it), appended to the graph being built:
    `graph` itself, or, for a region's tangent rule (primitives/control.py), the body being walked.

    A region's rule makes its own node carry the tangents (a loop carries (primal, tangent) pairs), so
    that node reads tangents built after it: the nodes are put back in an order that computes every
    value before it is read."""
    batch = tuple(batch)
    tangents = dict(seeds)
    into = current_graph()
    before = set(into.nodes)
    regions = False
    for node in list(graph.nodes if nodes is None else nodes):
        ts = [tangents.get(v) for v in node.inputs]
        if all(t is None for t in ts):
            continue
        count = len(into.nodes)
        with at(node.loc):
            outs = node.prim.tangent(node, ts, batch)
        regions = regions or bool(bodies(node))
        for made in into.nodes[count:]:
            into.tangent_origin.setdefault(made, into.tangent_origin.get(node, node))
        if len(outs) != len(node.outputs):
            raise CompileError(f"internal: tangent of {node.prim.name} gave {len(outs)} tangents for "
                               f"{len(node.outputs)} outputs", node.loc)
        for v, t in zip(node.outputs, outs):
            if t is None or not is_float(v.dtype):
                continue
            if t.shape != batch + v.shape:
                raise CompileError(f"internal: tangent of shape {t.shape} for a value of shape {v.shape} "
                                   f"in {node.prim.name}", node.loc)
            if t.name is None and t.grad_of is None and t.tangent_of is None and t.node not in before:
                t.tangent_of = v
            tangents[v] = t
    if regions:
        in_order(into)
    return tangents


def in_order(graph):
    """Reorder `graph.nodes` so that each node comes after the nodes computing what it reads, moving
    nothing that need not move (a region that now reads its inputs' tangents moves after them)."""
    made = {v: n for n in graph.nodes for v in n.outputs}
    position = {n: i for i, n in enumerate(graph.nodes)}
    if all(position[made[v]] < position[n] for n in graph.nodes for v in n.inputs if v in made):
        return
    done, order = set(), []
    for node in graph.nodes:
        stack = [(node, False)]
        while stack:
            n, ready = stack.pop()
            if n in done:
                continue
            if ready:
                done.add(n)
                order.append(n)
                continue
            stack.append((n, True))
            for v in reversed(n.inputs):
                m = made.get(v)
                if m is not None and m not in done:
                    stack.append((m, False))
    graph.nodes = order


control.use_forward(walk)
