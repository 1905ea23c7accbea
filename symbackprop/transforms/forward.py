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
"""
from __future__ import annotations

from ..dtypes import is_float
from ..errors import CompileError
from ..ir import at, building


def forward(graph, seeds, batch=(), nodes=None):
    """Append the tangent computation for `seeds` ({value: its tangent}) to `graph`; return the map
    from each value that depends on a seed to its tangent (shape batch + the value's shape).
    `nodes` are the nodes differentiated (default: all of the graph's now)."""
    batch = tuple(batch)
    tangents = dict(seeds)
    before = set(graph.nodes)
    with building(graph):
        for node in list(graph.nodes if nodes is None else nodes):
            ts = [tangents.get(v) for v in node.inputs]
            if all(t is None for t in ts):
                continue
            count = len(graph.nodes)
            with at(node.loc):
                outs = node.prim.tangent(node, ts, batch)
            for made in graph.nodes[count:]:
                graph.tangent_origin.setdefault(made, graph.tangent_origin.get(node, node))
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
    graph.tangent_passes.append((dict(seeds), tangents))
    return tangents
