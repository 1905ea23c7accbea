"""Dead code: drop nodes none of whose outputs reach the results; and stop_gradient, once reverse mode ran."""
from __future__ import annotations

from ..primitives.custom import CUSTOM_CALLS
from ..primitives.elementwise import Kernel, arg
from ..primitives.shape import Copy, StopGradient


def eliminate_dead_code(graph, results):
    live = set(results)
    kept = []
    for node in reversed(graph.nodes):
        if any(v in live for v in node.outputs):
            kept.append(node)
            live.update(node.inputs)
    kept.reverse()
    graph.nodes = kept
    return graph


def replace_uses(graph, old, new):
    """Make every node that reads `old` read `new` instead."""
    for node in graph.nodes:
        if any(v is old for v in node.inputs):
            node.inputs = [new if v is old else v for v in node.inputs]


def drop_stop_gradients(graph, results):
    """Readers of sb.stop_gradient(x) read x: its only meaning, zero derivative, was reverse mode's;
    so do the readers of an sb.custom_vjp helper's call (its rule was reverse mode's too), and the
    readers of a model's np.copy(x), which in the functional IR is the same array.

    One that is itself a result (the model returns it) becomes a kernel returning x, so that the
    result is still produced by a node of its own."""
    results = set(results)
    for node in graph.nodes:
        if node.prim in CUSTOM_CALLS:  # a custom rule's helper call: its readers read the helper's value
            node.prim = StopGradient
            node.inputs = node.inputs[-1:]
            value, out = node.inputs[0], node.outputs[0]
            if value.name is None and value.node is not None:  # `h = helper(x)` names the helper's value
                value.name = out.name
                for v in (v for n in graph.nodes for v in n.outputs if v.grad_of is out):
                    v.grad_of = value  # d_h, not d_h_1 beside a second `h`
        if node.prim is not StopGradient and not (node.prim is Copy and node.attrs.get("traced")):
            continue
        x, out = node.inputs[0], node.outputs[0]
        if out in results:
            node.prim = Kernel
            node.attrs = {"outs": (arg(0),), "program": (), "names": (), "shape": out.shape}
            continue
        replace_uses(graph, out, x)
    eliminate_dead_code(graph, list(results))
