"""Dead code: drop nodes none of whose outputs reach the results."""
from __future__ import annotations


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
