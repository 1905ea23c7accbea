"""Fuse elementwise kernels: a producer read only by one kernel is inlined into it.

The merged body is one SymPy expression per output, so its derivative is taken
whole (where-safety and sigmoid recognition need the guarded or composed
expression inside one body) and CSE sees across what were separate operations.
Broadcasts feeding a kernel are absorbed: NumPy broadcasting does them for free.
User names of inlined values are kept, so the generated code still says `z`.

A kernel stops growing at MAX_FUSED operations or MAX_INPUTS distinct inputs: each
merge rewrites the consumer's whole body, so an unbounded chain (a static loop
accumulating 966 taps, fused across statements on LLVM) costs time quadratic in its
length and a body SymPy and LLVM are slow on; bounded kernels keep compile time
linear in program length.
"""
from __future__ import annotations

import sympy

from ..dtypes import is_float
from ..primitives.elementwise import Kernel, arg, expand, kernel_dtype, operand_dtypes, temps
from ..primitives.shape import BroadcastTo


def named(v) -> bool:
    """A value the user named, or the gradient of one: a line of its own in readable code."""
    return bool(v.name) or (v.grad_of is not None and bool(v.grad_of.name))


MAX_FUSED = 64
MAX_INPUTS = 32


def _fusible(producer, consumer, users, keep, across_names, sizes):
    if producer is None or producer.prim is not Kernel or producer is consumer:
        return False
    if sizes.get(producer, 1) + sizes.get(consumer, 1) > MAX_FUSED:
        return False
    if len(set(producer.inputs) | set(consumer.inputs)) - 1 > MAX_INPUTS:
        return False
    if producer.attrs.get("stored"):  # a 16-bit array kept as such (passes/storage.py)
        return False
    # a 16-bit array's float32 read is named after it (W1_32) but is no statement of the model's
    if not across_names and any(named(v) for v in producer.outputs) and "widen" not in producer.attrs:
        return False
    if any(v in keep for v in producer.outputs):
        return False
    if any(u is not consumer for v in producer.outputs for u in users.get(v, [])):
        return False
    shape = producer.attrs["shape"]
    # computing a smaller producer per element of a bigger consumer would repeat work
    return shape == consumer.attrs["shape"] or all(s == 1 for s in shape)


def _merge(consumer, producer):
    """Inline `producer` into `consumer` (mutating it)."""
    inputs, index = [], {}

    def slot(v):
        if v not in index:
            index[v] = arg(len(inputs))
            inputs.append(v)
        return index[v]

    p_map = {arg(j): slot(v) for j, v in enumerate(producer.inputs)}
    p_outs = [e.xreplace(p_map) for e in expand(producer.attrs["program"], producer.attrs["outs"])]
    c_map = {}
    for j, v in enumerate(consumer.inputs):
        if v.node is producer:
            c_map[arg(j)] = p_outs[producer.outputs.index(v)]
        else:
            c_map[arg(j)] = slot(v)
    # slots of producer inputs were taken first; renumber in order of the consumer's inputs
    outs = tuple(e.xreplace(c_map) for e in expand(consumer.attrs["program"], consumer.attrs["outs"]))
    names = tuple((n, e.xreplace(p_map)) for n, e in producer.attrs["names"])
    names += tuple((v.name, p_outs[k]) for k, v in enumerate(producer.outputs) if v.name)
    names += tuple((n, e.xreplace(c_map)) for n, e in consumer.attrs["names"])
    consumer.inputs = inputs
    consumer.attrs.update(outs=outs, program=(), names=names)


def _keep_declared_dtype(node):
    """A merged body can read as narrower than its outputs were declared: a NumPy scalar (strong,
    np.float64(2.0)) folded in next to float32 arrays and weak Python floats. The kernel then states
    its dtype, so every backend computes in it."""
    if node.attrs.get("dtype") is not None:
        return
    declared = {v.dtype for v in node.outputs}
    if len(declared) != 1 or not is_float(next(iter(declared))):
        return
    (dtype,) = declared
    dtypes = operand_dtypes(node.inputs)
    if any(kernel_dtype(e, dtypes) != dtype for e in expand(node.attrs["program"], node.attrs["outs"])):
        node.attrs["dtype"] = dtype


def _absorb_broadcasts(node):
    changed = False
    for j, v in enumerate(node.inputs):
        if v.node is not None and v.node.prim is BroadcastTo:
            node.inputs[j] = v.node.inputs[0]
            changed = True
    if changed:  # the same source may now appear twice
        inputs, index, subs = [], {}, {}
        for j, v in enumerate(node.inputs):
            if v not in index:
                index[v] = arg(len(inputs))
                inputs.append(v)
            subs[arg(j)] = index[v]
        node.inputs = inputs
        node.attrs["outs"] = tuple(e.xreplace(subs) for e in node.attrs["outs"])
        node.attrs["program"] = tuple((t, e.xreplace(subs)) for t, e in node.attrs["program"])
        node.attrs["names"] = tuple((n, e.xreplace(subs)) for n, e in node.attrs["names"])


def fuse_elementwise(graph, keep=(), across_names=False):
    """Inline single-use kernels into their consumers, in one pass over the graph.

    By default a value the user named stays a statement of its own, so the code
    reads line by line like the model and its backprop; `across_names` fuses
    whole chains (for backends that compile each kernel into one loop).
    """
    keep = set(keep)
    users = graph.users()
    removed = set()
    sizes = {}  # operations merged into each kernel so far
    for node in graph.nodes:
        if node.prim is not Kernel:
            continue
        _absorb_broadcasts(node)
        merged = True
        while merged:
            merged = False
            for v in list(node.inputs):
                producer = v.node
                if producer is not None and producer not in removed and _fusible(producer, node, users, keep, across_names, sizes):
                    sizes[node] = sizes.get(node, 1) + sizes.pop(producer, 1)
                    _merge(node, producer)
                    _keep_declared_dtype(node)
                    graph.fused[node] = tuple(dict.fromkeys(graph.fused.get(node, (node.loc,))
                                                            + graph.fused.pop(producer, (producer.loc,))))
                    removed.add(producer)
                    merged = True
                    break
        for v in node.inputs:
            users.setdefault(v, [])
            if node not in users[v]:
                users[v].append(node)
    graph.nodes = [n for n in graph.nodes if n not in removed]
    return graph


def finalize_kernels(graph):
    """Common subexpressions of each kernel's outputs, as an ordered program of temps."""
    for node in graph.nodes:
        if node.prim is Kernel:
            outs = expand(node.attrs["program"], node.attrs["outs"])
            repl, reduced = sympy.cse(list(outs), symbols=temps(), optimizations=None, order="none")
            node.attrs["program"] = tuple(repl)
            node.attrs["outs"] = tuple(reduced)
    return graph


def inline_scalars(graph, update_nodes, results):
    """Scalars several updates read (1 - beta1) are written where they are used: free in every backend."""
    for node in graph.nodes:
        if node not in update_nodes or node.prim is not Kernel:
            continue
        merged = True
        while merged:
            merged = False
            for v in node.inputs:
                producer = v.node
                if (producer is not None and producer is not node and producer in update_nodes
                        and producer.prim is Kernel and v.shape == () and not named(v)
                        and not any(o in results for o in producer.outputs)):
                    _merge(node, producer)
                    merged = True
                    break
