"""16-bit storage of a float16/bfloat16 model's arrays: stored in 16 bits, computed in float32.

The trace computes a 16-bit model in float32 (each 16-bit parameter widened where it enters). This pass,
run on the forward graph once each statement is one kernel, gives every array a statement computes a 16-bit
home (then fusion runs again):

- each float32 array a node makes (a kernel's, a reduction's or a product's result) is narrowed to the
  model's 16-bit dtype by a `stored` kernel, which fusion never inlines into its readers (it may absorb
  the kernel computing it: `h = np.tanh(...).astype(np.float16)`);
- each read of a stored array (a parameter too) is a widening kernel of its own, which fusion inlines into
  the kernel reading it, so that kernel computes in float32 from the 16-bit array; a product, reduction
  or view reads a float32 copy made just before it.

Reverse mode then finds the 16-bit arrays as the residuals kernels read; `rewiden_residuals` gives the
backward nodes that read a forward widening (a product's `h.T @ d_z`) a widening of their own, so the
float32 copy lives only around each use. Views (reshape, transpose, indexing, broadcast) and constants
are not stored: they read or are what is already there.
"""
from __future__ import annotations

import itertools

import numpy as np

from ..dtypes import COMPUTE
from ..ir import append, at, building
from ..primitives.elementwise import Constant, Fill, Kernel, arg
from ..primitives.index import Index
from ..primitives.shape import BroadcastTo, Reshape, Transpose

_VIEWS = (Reshape, Transpose, Index, BroadcastTo, Fill, Constant)
_uses = itertools.count()


def is_widening(node) -> bool:
    return node is not None and node.prim is Kernel and "widen" in node.attrs


def _kernel(v, dtype, **extra):
    attrs = {"outs": (arg(0),), "program": (), "names": (), "shape": v.shape, "dtype": np.dtype(dtype), **extra}
    return append(Kernel, [v], attrs)


def widen(v):
    """A float32 read of the 16-bit array `v`, a node of its own (one per use), named after it (W1_32)."""
    w = _kernel(v, COMPUTE, widen=next(_uses))
    if v.name and w.name is None:
        w.name = f"{v.name}_32"
    return w


def store_in_16_bits(graph, half):
    """Narrow the float32 arrays the forward graph makes to `half`, and widen each read (module docstring)."""
    stored = {}      # float32 value -> its 16-bit home
    order = []
    users = graph.users()
    kept = {graph.result, *graph.aux}
    with building(graph):
        for node in list(graph.nodes):
            if is_widening(node) and node.inputs[0] in graph.params:
                stored[node.outputs[0]] = node.inputs[0]  # a parameter's own 16 bits: read it afresh at each use
                continue
            for i, v in enumerate(node.inputs):
                if v in stored:
                    with at(node.loc):
                        made = widen(stored[v])
                    order.append(made.node)
                    node.inputs[i] = made
            order.append(node)
            if node.prim in _VIEWS:
                continue
            for v in node.outputs:
                if v.dtype != COMPUTE or v.ndim == 0 or v.weak or not (users.get(v) or v in kept):
                    continue  # (an output only the backward pass will read, a softmax's sums: float32)
                with at(node.loc):
                    n = _kernel(v, half, stored=True)
                order.append(n.node)
                n.name, v.name = v.name, None  # the user's name goes to the array that is kept
                n.grad_of, n.tangent_of = v.grad_of, v.tangent_of
                stored[v] = n
        graph.result = _reread(graph.result, stored, order)
        graph.aux[:] = [_reread(v, stored, order) for v in graph.aux]
    graph.nodes = order
    graph.homes = stored  # for rewiden_residuals: the 16-bit array holding each float32 one
    return graph


def _reread(v, stored, order):
    if v not in stored:
        return v
    made = widen(stored[v])
    order.append(made.node)
    return made


def rewiden_residuals(graph, forward_nodes):
    """Backward nodes reading a forward float32 array with a 16-bit home (a widening's input, or a stored
    array: a softmax's exponentials, a max) read a widening of the home of their own, made just before them,
    so the float32 arrays of the forward pass are not kept for the backward one."""
    homes = getattr(graph, "homes", None)
    if homes is None:
        return graph
    order = []
    with building(graph):
        for node in list(graph.nodes):
            if node not in forward_nodes:
                for i, v in enumerate(node.inputs):
                    home = homes.get(v)
                    if home is None and v.node in forward_nodes and is_widening(v.node):
                        home = v.node.inputs[0]
                    if home is not None:
                        with at(node.loc):
                            made = widen(home)
                        order.append(made.node)
                        node.inputs[i] = made
            order.append(node)
    graph.nodes = order
    return graph
