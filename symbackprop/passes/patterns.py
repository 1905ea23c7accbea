"""Recognise the softmax family in the traced forward graph.

    log(sum(exp(z), axis))        -> logsumexp(z)
    z - logsumexp(z, keepdims)    -> log_softmax(z)
    e / sum(e, axis, keepdims)    -> softmax(z)   where e = exp(z)

Only when the intermediate values are used nowhere else, so nothing the user
wrote is lost. Their adjoints (primitives/composite.py) are the textbook ones.
"""
from __future__ import annotations

import sympy

from ..ir import Node, Value
from ..primitives.composite import LogSoftmax, LogSumExp, Softmax
from ..primitives.elementwise import Kernel, arg, expand
from ..primitives.reduce import Sum
from .dce import replace_uses

A0, A1 = arg(0), arg(1)


def _body(node):
    if node is None or node.prim is not Kernel or len(node.outputs) != 1:
        return None
    return expand(node.attrs["program"], node.attrs["outs"])[0]


def _only_user(v, users, node):
    return all(u is node for u in users.get(v, []))


def _new_node(prim, z, attrs, loc, like, e, s):
    """The composite, named after the values it replaces (`e` and `s` when the user named them)."""
    node = Node(prim, [z], attrs, loc)
    for shape, dtype in prim.infer(node):
        node.outputs.append(Value(shape, dtype, node))
    for out, old, default in zip(node.outputs, (like, e, s), (None, "e", "s")):
        out.name = old.name or default
    return node


def recognise_softmax_family(graph):
    users = graph.users()
    # returned beside the loss, or a region body's result: a use of its own, never absorbed into a composite
    for v in list(graph.aux) + [r for r in graph.results if r is not None]:
        users.setdefault(v, []).append(None)
    new_nodes, replaced = [], {}
    for node in graph.nodes:
        node.inputs = [replaced.get(v, v) for v in node.inputs]
        made = _logsumexp(node, users) or _log_softmax(node, users) or _softmax(node, users)
        if made is None:
            new_nodes.append(node)
            continue
        new_nodes.append(made)
        replaced[node.outputs[0]] = made.outputs[0]
        for u in users.get(node.outputs[0], []):
            users.setdefault(made.outputs[0], []).append(u)
    graph.nodes = new_nodes
    if graph.result in replaced:
        graph.result = replaced[graph.result]
    graph.aux = [replaced.get(v, v) for v in graph.aux]
    graph.results = [replaced.get(v, v) if v is not None else None for v in graph.results]
    for old, new in replaced.items():
        replace_uses(graph, old, new)
    return graph


def _logsumexp(node, users):
    """node = log(s) with s = sum(e) and e = exp(z)."""
    if _body(node) != sympy.log(A0):
        return None
    s = node.inputs[0]
    if s.node is None or s.node.prim is not Sum or not _only_user(s, users, node):
        return None
    e = s.node.inputs[0]
    if _body(e.node) != sympy.exp(A0) or not _only_user(e, users, s.node):
        return None
    z = e.node.inputs[0]
    attrs = {"axes": s.node.attrs["axes"], "keepdims": s.node.attrs["keepdims"]}
    return _new_node(LogSumExp, z, attrs, node.loc, node.outputs[0], e, s)


def _log_softmax(node, users):
    """node = z - lse with lse = logsumexp(z, keepdims=True)."""
    if _body(node) != A0 - A1 or len(node.inputs) != 2:
        return None
    z, lse = node.inputs
    lse_node = lse.node
    if lse_node is None or lse_node.prim is not LogSumExp or lse_node.inputs[0] is not z:
        return None
    if not lse_node.attrs["keepdims"] or not _only_user(lse, users, node):
        return None
    _, e, s = lse_node.outputs
    return _new_node(LogSoftmax, z, {"axes": lse_node.attrs["axes"]}, node.loc, node.outputs[0], e, s)


def _softmax(node, users):
    """node = e / s with s = sum(e, keepdims=True) and e = exp(z)."""
    if _body(node) != A0 / A1 or len(node.inputs) != 2:
        return None
    e, s = node.inputs
    if s.node is None or s.node.prim is not Sum or s.node.inputs[0] is not e or not s.node.attrs["keepdims"]:
        return None
    if _body(e.node) != sympy.exp(A0):
        return None
    if any(u not in (node, s.node) for u in users.get(e, [])) or not _only_user(s, users, node):
        return None
    return _new_node(Softmax, e.node.inputs[0], {"axes": s.node.attrs["axes"]}, node.loc, node.outputs[0], e, s)
