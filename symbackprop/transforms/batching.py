"""Batching (sb.vmap, sb.per_example_grad): a graph written for one example, rebuilt for n at once.

The graph was traced (and, for per-example gradients, differentiated) on one example's shapes. Each
node is rebuilt in the graph being built, in order: a node none of whose inputs carries the batch
axis is copied as it is (a weight's transpose, a constant); any other is handed to its primitive's
`batch` rule, beside its adjoint and tangent, which returns its outputs with a leading batch axis of
size n. So a product of a batched x with a weight becomes one matrix product with the batch folded
into its rows, not n products, and there is no loop over examples anywhere. A primitive without a
rule is a CompileError naming it at its model line.
"""
from __future__ import annotations

from ..errors import CompileError
from ..ir import append, at


def batch(graph, inputs, batched, n):
    """Rebuild `graph`'s nodes into the graph being built. `inputs` maps each of its parameters to the
    value standing for it there (with a leading batch axis of size n where `batched[param]`). Returns
    (values, is_batched): each old value's new value, and whether it carries the batch axis."""
    values = dict(inputs)
    flags = {p: bool(batched.get(p, False)) for p in inputs}
    for node in graph.nodes:
        ins = [values[v] for v in node.inputs]
        bs = tuple(flags[v] for v in node.inputs)
        with at(node.loc):
            if any(bs):
                outs = node.prim.batch(node, ins, bs, n)
            else:
                outs = _copy(node, ins)
        if len(outs) != len(node.outputs):
            raise CompileError(f"internal: the batching rule of {node.prim.name} gave {len(outs)} outputs for "
                               f"{len(node.outputs)}", node.loc)
        for v, new in zip(node.outputs, outs):
            want = ((n,) if any(bs) else ()) + v.shape
            if new.shape != want:
                raise CompileError(f"internal: the batching rule of {node.prim.name} gave shape {new.shape} for "
                                   f"{want}", node.loc)
            values[v], flags[v] = new, any(bs)
            if new.name is None and v.name is not None:
                new.name = v.name
            new.weak = v.weak
            if any(bs) and v.zero_sum_axes:
                new.zero_sum_axes = frozenset(a + 1 for a in v.zero_sum_axes)
    for v, new in values.items():  # gradients and tangents keep their d_/t_ names
        if v.grad_of in values and new.grad_of is None:
            new.grad_of = values[v.grad_of]
        if v.tangent_of in values and new.tangent_of is None:
            new.tangent_of = values[v.tangent_of]
    return values, flags


def _copy(node, ins):
    made = append(node.prim, ins, node.attrs)
    return list(made) if isinstance(made, tuple) else [made]
