"""The optimizer's update rules appended to a differentiated graph: the train step's transform.

After reverse mode, the update rules of an sb.optim optimizer are built in the
same graph as elementwise kernels over parameter, gradient, state and
hyperparameter Values; each (target, new value) pair is an update that a
backend writes into its target in place. Optimizer state (buffers and the step
count t) and the hyperparameters become extra inputs, so a new learning rate
needs no recompilation.
"""
from __future__ import annotations

from types import SimpleNamespace

from ..errors import CompileError
from ..ir import Value, append, building, rule
from ..primitives.elementwise import Kernel, expand
from ..primitives.index import Index
from ..primitives.shape import BroadcastTo, Copy, Reshape, Transpose


def writes_in_place(new, update_nodes) -> bool:
    """Whether the update to `new` overwrites its target where `new` is computed (else it is copied in last)."""
    node = new.node
    return node is not None and node in update_nodes and node.prim is Kernel and len(node.outputs) == 1


def append_updates(program):
    """Protect what the updates would overwrite, then append the updates (the program's update fields)."""
    graph, optimizer = program.graph, program.optimizer
    with building(graph):
        targets = set(program.wrt_values)
        # d_a = b when the loss is sum(a*b), and b may be updated before a
        program.grads = [_fresh(g, targets, gradient_of=p) for g, p in zip(program.grads, program.wrt_values)]
        graph.result = _fresh(graph.result, targets)  # the loss is returned after the update
    before_update = set(graph.nodes)
    program.optimizer_text = repr(optimizer)
    program.hyper_defaults = optimizer.values()
    program.buffers = tuple(optimizer.buffers)
    with building(graph):
        program.updates = _build_updates(graph, program, optimizer, program.wrt_values, program.grads,
                                         program.specs)
    program.update_nodes = set(graph.nodes) - before_update


#: NumPy gives views for these: an in-place update of the base shows through them
_VIEWS = (Reshape, Transpose, Index, BroadcastTo)


def alias_root(v):
    """The array whose memory `v` may be: itself, or the base of the views it reads through."""
    while v.node is not None:
        node = v.node
        if node.prim in _VIEWS:
            v = node.inputs[0]
            continue
        if node.prim is Kernel:  # a kernel whose output is one of its inputs prints as a plain alias
            out = expand(node.attrs["program"], node.attrs["outs"])[node.outputs.index(v)]
            if out.is_Symbol and out.name.startswith("a"):
                v = node.inputs[int(out.name[1:])]
                continue
        break
    return v


def _fresh(v, targets, gradient_of=None):
    """`v`, or a copy of it when it may share memory with a parameter updated in place."""
    root = alias_root(v)
    if root not in targets:
        return v
    with rule(f"a copy: {root.name} is overwritten by its update"):
        copied = append(Copy, [v])
    if gradient_of is not None:
        copied.grad_of = gradient_of
    else:
        copied.name = v.name
    return copied


def unique_name(name, taken):
    """`name`, or `name_` (`name__`, ...) when it is taken; the result is taken from then on."""
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def _build_updates(graph, compiled, optimizer, wrt_values, grads, specs):
    """Add state and hyperparameter inputs and the optimizer's update kernels; return the updates."""
    taken = {s.name for s in specs}
    dtype = min((p.dtype for p in wrt_values), key=lambda d: d.itemsize)  # float32 params: float32 state
    compiled.hyper_dtype = dtype

    def input_value(name, shape, dt):
        v = Value(shape, dt, None, name)
        graph.params.append(v)
        return v

    state = []
    for p in wrt_values:
        buffers = {}
        for b in optimizer.buffers:
            buffers[b] = input_value(unique_name(f"{b}_{p.name}", taken), p.shape, p.dtype)
            compiled.state.append((buffers[b].name, p.name))
        state.append(buffers)
    t = None
    if optimizer.counts_steps:
        t = input_value(unique_name("t", taken), (), dtype)
        compiled.step_name = t.name
    h = SimpleNamespace()
    for name in optimizer.hyperparameters:
        v = input_value(unique_name(name, taken), (), dtype)
        setattr(h, name, v)
        compiled.hyper.append((v.name, name))
    compiled.core = unique_name("step", taken)

    updates = []
    if t is not None:
        with rule("t = t + 1"):
            t_new = t + 1
        updates.append((t, t_new))
        t = t_new
    shared = optimizer.shared(h, t)
    for p, g, buffers in zip(wrt_values, grads, state):
        for target, new in optimizer.update(p, g, buffers, h, shared):
            if new.shape != target.shape:
                raise CompileError(f"internal: {type(optimizer).__name__} updates {target.name} of shape "
                                   f"{target.shape} with a value of shape {new.shape}")
            updates.append((target, new))
    return [(target, new) for target, new in updates if new is not target]


def check_no_stale_reads(graph, updates, update_nodes):
    """No statement after an in-place update may read the target's old value (or a view of it)."""
    written, at_node = set(), {new.node: target for target, new in updates if writes_in_place(new, update_nodes)}
    for node in graph.nodes:
        if node not in update_nodes:
            continue
        stale = [v for v in node.inputs if alias_root(v) in written]
        if stale:
            raise CompileError(f"internal: the update reads {stale[0].name or 'a value'} after overwriting it",
                               node.loc)
        if node in at_node:
            written.add(at_node[node])
