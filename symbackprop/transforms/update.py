"""The optimizer's update rules appended to a differentiated graph: the train step's transform.

After reverse mode, the update rules of an sb.optim optimizer are built in the
same graph as elementwise kernels over parameter, gradient, state and
hyperparameter Values; each (target, new value) pair is an update that a
backend writes into its target in place. Optimizer state (buffers and the step
count t) and the hyperparameters become extra inputs, so a new learning rate
needs no recompilation.

Before the optimizer sees the gradients, two options of the train step rewrite
them, in this order:

- accumulation (`accumulate=k`): gradient buffers `acc_<p>` are state too. The
  accumulating Program (phase "accumulate", the first k - 1 calls) only adds
  each gradient into its buffer; the updating one (the k-th call) gives the
  optimizer g = acc + g, the sum of the k calls' gradients, and zeroes the
  buffers;
- clipping (`clip_norm`): every gradient is scaled by
  min(1, clip_norm/(grad_norm + CLIP_EPS)), grad_norm the L2 norm of all of
  them together, clip_norm a runtime input.
"""
from __future__ import annotations

from types import SimpleNamespace

from ..errors import CompileError
from ..ir import Value, append, building, rule
from ..primitives import ops
from ..primitives.elementwise import Kernel, expand
from ..primitives.index import Index
from ..primitives.shape import BroadcastTo, Copy, Reshape, Transpose

#: added to the global norm before dividing by it, as torch.nn.utils.clip_grad_norm_ does: an all-zero
#: gradient is left alone instead of giving 0/0
CLIP_EPS = 1e-6


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
        graph.aux = [_fresh(v, targets) for v in graph.aux]  # and so is aux
    before_update = set(graph.nodes)
    program.optimizer_text = repr(optimizer)
    program.hyper_defaults = optimizer.values()
    if program.clip_norm is not None:
        program.hyper_defaults["clip_norm"] = float(program.clip_norm)
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

    def state_input(prefix, p):
        v = input_value(unique_name(f"{prefix}_{p.name}", taken), p.shape, p.dtype)
        compiled.state.append((v.name, p.name))
        return v

    sums = [state_input("acc", p) for p in wrt_values] if compiled.accumulate > 1 else []
    if compiled.phase == "accumulate":
        compiled.core = unique_name("accumulate", taken)
        updates = []
        for acc, g in zip(sums, grads):
            with rule("acc = acc + g"):
                updates.append((acc, acc + g))
        return updates

    state = [{b: state_input(b, p) for b in optimizer.buffers} for p in wrt_values]
    t = None
    if optimizer.counts_steps:
        t = input_value(unique_name("t", taken), (), dtype)
        compiled.step_name = t.name
    h = SimpleNamespace()
    for name in optimizer.hyperparameters + (("clip_norm",) if compiled.clip_norm is not None else ()):
        v = input_value(unique_name(name, taken), (), dtype)
        setattr(h, name, v)
        compiled.hyper.append((v.name, name))
    compiled.core = unique_name("step", taken)

    updates = []
    if sums:
        grads = _sum_of_calls(grads, sums, compiled.accumulate)
    if compiled.clip_norm is not None:
        grads = _clipped(grads, h.clip_norm)
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
    with rule("acc = 0: the next call starts a new sum"):  # built last: nothing after it reads the sums
        updates += [(acc, ops.zeros_like(acc)) for acc in sums]
    return [(target, new) for target, new in updates if new is not target]


def _sum_of_calls(grads, sums, k):
    """The gradient the optimizer sees on the k-th call: the sum over the k calls, as ../shared/API.md
    says (for a loss summed over the batch, the gradient of one call on the k-times larger batch)."""
    with rule(f"g = acc + g: the summed gradient of {k} calls"):
        return [acc + g for acc, g in zip(sums, grads)]


def _clipped(grads, clip_norm):
    """Every gradient scaled by min(1, clip_norm/(grad_norm + CLIP_EPS)), grad_norm the global L2 norm."""
    with rule("grad_norm = sqrt(sum of g**2 over every parameter)"):
        squares = []
        for g in grads:  # each sum of squares an inner product: no array of squares is made
            flat = ops.reshape(g, (g.size,))
            squares.append(ops.dot(flat, flat))
        total = squares[0]
        for square in squares[1:]:
            total = total + square
        norm = ops.unary("sqrt", total)
        norm.name = "grad_norm"
    with rule(f"clip to the global norm: g = g*min(1, clip_norm/(grad_norm + {CLIP_EPS:g}))"):
        scale = ops.minimum(1.0, clip_norm / (norm + CLIP_EPS))
        scale.name = "clip_scale"
        return [g * scale for g in grads]


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
