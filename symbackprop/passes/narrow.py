"""Kernel outputs computed at their own, smaller shape.

A kernel computes every output at its full shape. An output whose body reads
only smaller inputs, such as the residual `1/std` of a layernorm (one per row)
kept by the forward kernel of `xc/std*g`, would be written out row by row as a
full (64, 128) array (`np.full(...)` in the NumPy text) and read back at that
size. It becomes a kernel of its own at its natural shape, broadcast where it is
read; kernels that read it absorb the broadcast, as NumPy broadcasting does.
"""
from __future__ import annotations

import numpy as np

from ..ir import Node, Value
from ..primitives.elementwise import Kernel, arg, expand
from ..primitives.shape import BroadcastTo
from .dce import replace_uses


def _natural_shape(expr, inputs):
    used = [inputs[int(s.name[1:])].shape for s in expr.free_symbols if s.name.startswith("a")]
    return tuple(np.broadcast_shapes(*used)) if used else None


def _node(prim, inputs, attrs, loc):
    node = Node(prim, inputs, attrs, loc)
    for shape, dtype in prim.infer(node):
        node.outputs.append(Value(shape, dtype, node))
    return node


def _split_off(node, k, shape):
    """A kernel computing output k of `node` at `shape`, and the broadcast of it to the node's shape."""
    old = node.outputs[k]
    expr = expand(node.attrs["program"], node.attrs["outs"])[k]
    used = sorted({int(s.name[1:]) for s in expr.free_symbols if s.name.startswith("a")})
    renumber = {arg(i): arg(j) for j, i in enumerate(used)}
    attrs = {"outs": (expr.xreplace(renumber),), "program": (), "names": (), "shape": shape,
             "dtype": old.dtype}
    small = _node(Kernel, [node.inputs[i] for i in used], attrs, node.loc)
    out = small.outputs[0]
    out.name, out.grad_of, out.weak = old.name, old.grad_of, old.weak
    wide = _node(BroadcastTo, [out], {"shape": old.shape}, node.loc)
    return old, small, wide


def _drop_output(node, k):
    outs = list(expand(node.attrs["program"], node.attrs["outs"]))
    del outs[k]
    node.attrs["outs"] = tuple(outs)
    node.attrs["program"] = ()
    del node.outputs[k]


def narrow_kernel_outputs(graph, keep=()):
    """Split off every kernel output whose body reads only inputs smaller than the kernel (not those in `keep`)."""
    keep = set(keep)
    new_nodes = []
    for node in graph.nodes:
        if node.prim is Kernel and len(node.outputs) > 1:
            outs = expand(node.attrs["program"], node.attrs["outs"])
            for k in reversed(range(len(outs))):
                shape = _natural_shape(outs[k], node.inputs)
                old = node.outputs[k]
                if (shape is None or shape == old.shape or old in keep or len(node.outputs) == 1
                        or int(np.prod(shape)) >= int(np.prod(old.shape))):
                    continue
                old, small, wide = _split_off(node, k, shape)
                replace_uses(graph, old, wide.outputs[0])
                _drop_output(node, k)
                new_nodes += [small, wide]
        new_nodes.append(node)
    graph.nodes = new_nodes
    return graph
