"""The stages, in order, and the lists each entry point runs.

A stage is a function `stage(program)` that reads and rewrites the Program's
graph (and the fields it declares). Adding a transform (checkpointing, forward
mode) is adding a stage here and to the lists that want it:

    FORWARD         trace -> softmax patterns -> dead code -> fuse each statement's chain -> 16-bit storage
                    (float16/bfloat16 models only; reverse mode then re-widens the 16-bit residuals it reads)
    GRADIENT        FORWARD -> reverse mode                         (what explain reads)
    VALUE_AND_GRAD  GRADIENT -> without stop_gradient -> dead code -> narrow -> fuse for the backend -> dead code
                    -> finalize -> checkpoint under the memory budget
    LOSS            trace -> patterns -> without stop_gradient -> dead code -> fuse -> 16-bit storage -> finalize
                    (the forward alone)
    TRAIN_STEP      GRADIENT -> without stop_gradient -> optimizer updates -> dead code -> fuse -> inline scalars -> dead code
                    -> finalize -> checkpoint under the memory budget -> check in-place order
    JVP             FORWARD -> forward mode (tangent inputs t_<x>) -> DERIVATIVE_OUTPUTS
    VJP             FORWARD -> reverse mode seeded by a cotangent input -> DERIVATIVE_OUTPUTS
    JACOBIAN        FORWARD -> forward mode over a basis (or reverse mode, then forward mode over the
                    cotangent's basis, when the result is the smaller side) -> DERIVATIVE_OUTPUTS
    HVP             GRADIENT -> forward mode over the forward and backward passes together -> DERIVATIVE_OUTPUTS
    HESSIAN         GRADIENT -> forward mode over a basis of each parameter -> DERIVATIVE_OUTPUTS
    VMAP            trace one example -> patterns -> dead code -> fuse -> batching (transforms/batching.py)
                    -> OUTPUTS
    PER_EXAMPLE_GRAD  trace one example -> patterns -> dead code -> fuse -> reverse mode -> batching -> OUTPUTS
    where OUTPUTS is without stop_gradient -> dead code -> narrow -> fuse for the backend -> dead code -> finalize,
    and DERIVATIVE_OUTPUTS (the five entry points) is OUTPUTS with the first dead code dropping the regions'
    unread outputs too (passes/regions.py), share subexpressions across kernels before finalize and checkpoint
    under the memory budget after it;
    the backend builds the result as a forward returning the entry point's arrays (as aux).
"""
from __future__ import annotations

import ast
import numbers

import numpy as np

from .. import dtypes
from ..errors import CompileError, Loc
from ..frontend.signature import Spec
from ..frontend.signature import rebuild, slots
from ..frontend.source import Source
from ..frontend.trace import Tracer
from ..ir import Graph, Value, append, at, building, has_regions, rule
from ..passes.dce import drop_stop_gradients, eliminate_dead_code
from ..passes.fuse import finalize_kernels, fuse_elementwise, inline_scalars
from ..passes.narrow import narrow_kernel_outputs
from ..passes.patterns import recognise_softmax_family
from ..passes.regions import drop_dead_region_parts
from ..passes.share import everything, share_across_kernels, transcendental
from ..passes.storage import rewiden_residuals, store_in_16_bits
from ..primitives import control, ops
from ..primitives.elementwise import Kernel, arg, constant, kernel
from ..transforms import batching, recompute, update
from ..transforms.forward import forward, snapshot
from ..transforms.reverse import reverse
from ..program import Leaf, Program


def run(program: Program, stages) -> Program:
    for stage in stages:
        stage(program)
    return program


def results(program: Program) -> list:
    """The values the generated code returns or writes: everything else may be dropped or fused away."""
    graph = program.graph
    if program.updates:  # a train step returns the loss and writes the updates; its gradients are read by them
        return [graph.result] + graph.aux + [new for _, new in program.updates]
    return [graph.result] + graph.aux + list(program.grads)


# ---- forward --------------------------------------------------------------------------

def trace_model(program: Program):
    """The forward graph of the model on the program's specs."""
    graph = Graph()
    src = Source(program.fn)
    with building(graph):
        args = []
        for s in program.specs:
            if s.kind == "static":
                args.append(s.value)
            else:
                v = Value(s.shape, s.dtype, None, s.name)
                v.weak = s.kind == "float"
                graph.params.append(v)
                args.append(_widened(v) if dtypes.is_half(v.dtype) else v)
        if program.trees is not None:  # parameter trees: the model sees each tree rebuilt from its leaves
            args = [args[t] if isinstance(t, int) else rebuild(t, args) for t in program.trees]
        result = Tracer(derivatives=derivatives, transpose=transpose, vectorize=vectorize).call_model(program.fn, args)
        loc = _return_loc(src)
        if program.has_aux:
            if not isinstance(result, (tuple, list)) or len(result) != 2:
                what = "nothing" if result is None else f"{len(result)} values" if isinstance(
                    result, (tuple, list)) else _described(result)
                raise CompileError(f"with has_aux=True the model returns (loss, aux); it returns {what}", loc,
                                   "Return a pair: `return loss, aux`, aux a tuple, list or dict of arrays and "
                                   "numbers (e.g. `return loss, {\"accuracy\": acc}`).")
            result, aux = result
            program.aux_tree = _flatten_aux(aux, graph.aux, loc, "aux")
        if isinstance(result, (bool, np.bool_)) or not isinstance(result, (Value, numbers.Real)):
            what = "nothing" if result is None else f"a {type(result).__name__}"
            hint = "Return a single number, e.g. np.sum(...) or np.mean(...)."
            if isinstance(result, (tuple, list)) and not program.has_aux:
                hint += (" To return more beside the loss (an accuracy, the logits), return (loss, aux) and "
                         "pass has_aux=True.")
            what_loss = "its loss must be" if program.has_aux else "it must return"
            raise CompileError(f"the model returns {what}{' as the loss' if program.has_aux else ''}; "
                               f"{what_loss} one scalar", loc, hint)
        if isinstance(result, Value):
            if program.entry in ARRAY_VALUED and dtypes.is_float(result.dtype):
                pass  # jvp, vjp and jacobian differentiate functions returning an array
            elif result.shape != ():
                raise CompileError(f"the model returns an array of shape {result.shape}; it must return one "
                                   "scalar (the loss)", loc, "Reduce it: return np.sum(x) or np.mean(x).")
            if not dtypes.is_float(result.dtype):
                raise CompileError(f"the model returns a {result.dtype} value; the loss must be a float", loc)
            if result.node is None:  # returning a parameter: make it a node of its own
                result = _copy(result)
        else:
            result = ops.fill(float(result), (), np.float64)
        half = _half_dtype(program.specs)
        if half is not None:  # a model of 16-bit floats computed in float32 returns its results in 16 bits
            result = _narrowed(result, half)
            graph.aux[:] = [_narrowed(v, half) for v in graph.aux]
        if result.name is None:
            result.name = "out" if program.entry in ARRAY_VALUED else "loss"
        graph.result = result
    program.graph = graph


def _widened(v):
    """A float16/bfloat16 parameter as the model computes with it: in float32 (symbackprop/dtypes.py)."""
    with rule(f"{v.name}: {v.dtype} computed in float32"):
        (w,) = kernel([v], (arg(0),), v.shape, dtype=dtypes.COMPUTE)
    w.node.attrs["widen"] = -1  # (passes/storage.py reads each use afresh)
    w.name = f"{v.name}_32"
    return w


def _half_dtype(specs):
    """The 16-bit float a model's results are given in: NumPy's result type of its float arrays, when
    that is float16 or bfloat16 (None otherwise)."""
    floats = [s.dtype for s in specs if s.kind == "array" and dtypes.is_float(s.dtype)]
    if not floats:
        return None
    dtype = np.result_type(*floats)
    return dtype if dtypes.is_half(dtype) else None


def _narrowed(v, half):
    """A float32 value computed from 16-bit inputs, given back in their dtype (others as they are)."""
    if not isinstance(v, Value) or v.dtype != dtypes.COMPUTE:
        return v
    with rule(f"the result in {half}"):
        (out,) = kernel([v], (arg(0),), v.shape, dtype=half)
    out.name = v.name
    return out


def derivatives(entry, body, values, names, wrt, directions):
    """The derivative an sb.grad / value_and_grad / jvp / hvp call inside a model asks for. The called
    model is traced on parameters of its own, through the stages its own entry point runs (patterns, dead
    code, each statement's fusion, then reverse or forward mode), and the finished graph is inlined where
    the call is: forward graph of the model around it, differentiated again by its own entry point.
    Returns (the called model's value, the derivatives)."""
    sub = Graph()
    with building(sub):
        inputs = []
        for v, name in zip(values, names):
            if isinstance(v, Value):
                p = Value(v.shape, v.dtype, None, name)
                p.weak = v.weak
                sub.params.append(p)
                inputs.append(p)
            else:
                inputs.append(v)
        out = body(inputs)
        if out.node is None:
            out = _copy(out)
        sub.result = out
        recognise_softmax_family(sub)
        eliminate_dead_code(sub, [sub.result])
        fuse_elementwise(sub, keep=[sub.result])
        out = sub.result
        params = [inputs[i] for i in wrt]
        seeds = {}
        if directions is not None and entry != "vjp":
            for p, d in zip(params, directions):
                t = Value(d.shape, d.dtype, None, "t_" + p.name)
                sub.params.append(t)
                seeds[p] = t
        if entry == "jvp":
            t = forward(sub, seeds).get(out)
            results = [t if t is not None else _zero(out)]
        elif entry == "vjp":
            seed = Value(out.shape, out.dtype, None, "d_" + (out.name or "out"))
            sub.params.append(seed)
            results = reverse(sub, params, seed=seed)
        elif entry == "jacobian":
            results = _jacobian_blocks(sub, out, params)
            eliminate_dead_code(sub, [out] + results)  # the reverse way's cotangent seed: read by nothing now
        else:
            results = reverse(sub, params)
            if entry == "hvp":
                tangents = forward(sub, seeds)
                results = [tangents.get(g) if tangents.get(g) is not None else _zero(g) for g in results]
            elif entry == "hessian":
                nodes = snapshot(sub)
                columns = [forward(sub, {p: basis(p)}, (p.size,), nodes) for p in params]
                results = [_block(columns[j].get(g), g, p, batch_first=False)
                           for g in results for j, p in enumerate(params)]
    outer = {p: v for p, v in zip(sub.params, [x for x in values if isinstance(x, Value)] + list(directions or []))}
    for node in sub.nodes:  # inlined into the model being traced (the current graph)
        with at(node.loc):
            if isinstance(node.prim, control.Region):
                made = tuple(control.copy_region(node, [outer[v] for v in node.inputs]).outputs)
            else:
                made = append(node.prim, [outer[v] for v in node.inputs], node.attrs)
        made = made if isinstance(made, tuple) else (made,)
        for v, m in zip(node.outputs, made):
            outer[v] = m
            if m.name is None and v.name is not None:
                m.name = v.name
    for v, m in list(outer.items()):
        if v.grad_of is not None and m.grad_of is None and m.name is None and v.grad_of in outer:
            m.grad_of = outer[v.grad_of]
        if v.tangent_of is not None and m.tangent_of is None and m.name is None and v.tangent_of in outer:
            m.tangent_of = outer[v.tangent_of]
    mapped = [outer[r] if r in outer else r for r in results]
    return outer[out], (mapped[0] if entry == "jvp" else mapped)


def transpose(body, primals, like, g):
    """The transpose of a linear map at `g`: an sb.custom_jvp rule in reverse mode. `body(primals, tangents)`
    traces the rule on parameters of its own (the primals, and one tangent shaped like each of `like`);
    reverse mode over it, seeded with g, gives one cotangent per tangent, and the graph is inlined where
    the call is (the tangents read as zeros there: the cotangents of a linear map do not depend on them)."""
    sub = Graph()
    with building(sub):
        params, outer = [], {}
        for v in primals:
            if isinstance(v, Value):
                p = Value(v.shape, v.dtype, None, v.name)
                p.weak = v.weak
                sub.params.append(p)
                outer[p] = v
                params.append(p)
            else:
                params.append(v)
        tangents = []
        for v in like:
            t = Value(v.shape, v.dtype if v.dtype.kind == "f" else np.float64, None, f"t_{v.name or 'x'}")
            sub.params.append(t)
            tangents.append(t)
        out = body(params, tangents)
        if out.node is None:
            out = _copy(out)
        u = Value(out.shape, out.dtype, None, "g")
        sub.params.append(u)
        sub.result = out
        grads = reverse(sub, tangents, seed=u)
    for t in tangents:
        outer[t] = ops.fill(0.0, t.shape, t.dtype)
    outer[u] = g
    for node in sub.nodes:
        ins = [outer[v] for v in node.inputs]
        with at(node.loc):
            if node.prim is Kernel:  # built again, so that the zero tangents and a number g fold into the bodies
                a = node.attrs
                made = kernel(ins, a["outs"], a["shape"], a["program"], a["names"], a.get("dtype"))
            else:
                made = ops.as_list(append(node.prim, ins, node.attrs))
        for v, m in zip(node.outputs, made):
            outer[v] = m
    return [outer[d] for d in grads]


def vectorize(body, values, axes, names):
    """An sb.vmap function called inside a model: its model traced on one example's shapes (the mapped
    arguments without their axis) in a graph of its own, then batched into the model being traced
    (transforms/batching.py), the batch axis first; the model around it differentiates the result."""
    n = next(v.shape[a] for v, a in zip(values, axes) if a is not None)
    sub = Graph()
    with building(sub):
        inputs = []
        for v, axis, name in zip(values, axes, names):
            if isinstance(v, Value):
                shape = v.shape if axis is None else v.shape[:axis] + v.shape[axis + 1:]
                p = Value(shape, v.dtype, None, name)
                p.weak = v.weak
                sub.params.append(p)
                inputs.append(p)
            else:
                inputs.append(v)
        out = body(inputs)
        if out.node is None:
            out = _copy(out)
        sub.result = out
    outer, batched = {}, {}
    for p, v, axis in zip(inputs, values, axes):
        if isinstance(v, Value):
            if axis:
                v = ops.transpose(v, (axis,) + tuple(d for d in range(v.ndim) if d != axis))
            outer[p] = v
            batched[p] = axis is not None
    got, flags = batching.batch(sub, outer, batched, n)
    return ops.batched(got[out], flags[out], n)


def _described(x) -> str:
    return f"an array of shape {x.shape}" if isinstance(x, Value) else f"a {type(x).__name__}"


def _flatten_aux(tree, leaves, loc, path):
    """The aux tree with each array replaced by its Leaf (appended to `leaves`); numbers kept as they are."""
    if isinstance(tree, Value):
        for k, v in enumerate(leaves):
            if v is tree:
                return Leaf(k)
        leaves.append(tree)
        return Leaf(len(leaves) - 1)
    if isinstance(tree, (tuple, list)):
        items = [_flatten_aux(t, leaves, loc, f"{path}[{k}]") for k, t in enumerate(tree)]
        return tuple(items) if isinstance(tree, tuple) else items
    if isinstance(tree, dict):
        return {k: _flatten_aux(v, leaves, loc, f"{path}[{k!r}]") for k, v in tree.items()}
    if tree is None or isinstance(tree, (numbers.Number, np.number, np.bool_, str)):
        return tree.item() if isinstance(tree, (np.number, np.bool_)) else tree
    raise CompileError(f"{path} is {_described(tree)}; aux holds arrays and numbers, in tuples, lists and dicts",
                       loc)


def _copy(v):
    """A kernel node returning `v` itself, so that the result is produced by a node."""
    return append(Kernel, [v], {"outs": (arg(0),), "program": (), "names": (), "shape": v.shape})


def _return_loc(src) -> Loc:
    rets = [n for n in ast.walk(src.node) if isinstance(n, ast.Return)]
    return src.loc(rets[-1] if rets else src.node)


def bodies(program: Program):
    """(body, values it keeps) of each value-dependent region, outermost first: every pass of the
    program's graph runs on them too, each body on its own (a region is one node to its graph)."""
    return control.bodies_kept(program.graph)


def recognise_patterns(program: Program):
    recognise_softmax_family(program.graph)
    for body, _ in bodies(program):
        recognise_softmax_family(body)


def store_16_bit(program: Program):
    """A 16-bit model's arrays stored in 16 bits, computed in float32 (passes/storage.py)."""
    half = _half_dtype(program.specs)
    if half is not None:  # each statement's result stored; its reads fused into the statements reading it
        store_in_16_bits(program.graph, half)
        fuse_statements(program)


def drop_dead_forward(program: Program):
    eliminate_dead_code(program.graph, [program.graph.result] + program.graph.aux)
    for body, keep in bodies(program):
        eliminate_dead_code(body, keep)


def fuse_statements(program: Program):
    """Each statement's elementwise chain becomes one kernel (names the user gave stay statements)."""
    fuse_elementwise(program.graph, keep=[program.graph.result] + program.graph.aux)
    for body, keep in bodies(program):
        fuse_elementwise(body, keep=keep)


# ---- reverse mode -----------------------------------------------------------------------

def reverse_mode(program: Program):
    """The backward pass appended to the forward graph: one gradient per `wrt` parameter."""
    graph = program.graph
    params = {p.name: p for p in graph.params}
    program.wrt_values = [params[program.specs[i].name] for i in program.wrt]
    program.forward_nodes = set(graph.nodes)
    with building(graph):
        program.grads = reverse(graph, program.wrt_values)
    rewiden_residuals(graph, program.forward_nodes)


# ---- after reverse mode ------------------------------------------------------------------

def without_stop_gradients(program: Program):
    """After reverse mode (or in a forward alone) sb.stop_gradient means nothing more: read its input."""
    drop_stop_gradients(program.graph, results(program))
    for body, keep in bodies(program):
        drop_stop_gradients(body, keep)


def drop_dead(program: Program):
    eliminate_dead_code(program.graph, results(program))
    for body, keep in bodies(program):
        eliminate_dead_code(body, keep)


def drop_dead_in_regions(program: Program):
    """Dead code, with the outputs of regions nothing reads (a derivative program reads a region's tangents,
    often not its values: passes/regions.py) and what only they needed."""
    drop_dead_region_parts(program.graph, results(program))


def narrow(program: Program):
    narrow_kernel_outputs(program.graph, keep=results(program))
    for body, keep in bodies(program):
        narrow_kernel_outputs(body, keep=keep)


def fuse_for_backend(program: Program):
    """NumPy code keeps one statement per line of the model; a compiled backend fuses whole chains into
    one loop across statements."""
    keep = results(program)
    fuse_elementwise(program.graph, keep=keep + program.graph.params,
                     across_names=program.backend.fuses_across_statements)
    for body, kept in bodies(program):
        fuse_elementwise(body, keep=kept + body.params, across_names=program.backend.fuses_across_statements)


def finalize(program: Program):
    finalize_kernels(program.graph)
    _forward_closed(program)
    graphs = [program.graph]
    for body, _ in bodies(program):
        finalize_kernels(body)
        graphs.append(body)
    program.scalar = all(s.kind in ("float", "static") for s in program.specs) and all(
        v.shape == () for g in graphs for n in g.nodes for v in n.outputs)


def _forward_closed(program):
    """Every node a forward node reads from is forward too. A model calling an sb.grad function has a
    backward pass inside its forward one, and passes after reverse mode (narrowing, fusion) may make new
    nodes there: the generated forward section must compute them before it reads them."""
    forward_nodes = program.forward_nodes
    if not forward_nodes:
        return
    needed = set()
    for node in reversed(program.graph.nodes):
        if node in forward_nodes or node in needed:
            needed.update(v.node for v in node.inputs if v.node is not None)
    program.forward_nodes = forward_nodes | (needed & set(program.graph.nodes))


def checkpoint(program: Program):
    """Under `memory_budget=`: drop residuals and recompute them in the backward pass (transforms/recompute.py).

    Runs last, on finished kernels, so that a recomputed value is the same statement as its forward one
    (the same numbers, bit for bit); without a budget it does nothing."""
    if program.memory_budget is None:
        return
    src = Source(program.fn)
    if has_regions(program.graph):
        raise CompileError("memory_budget= is not yet supported with an `if` or `while` on array values",
                           src.loc(src.node), "Leave memory_budget out for this model.")
    program.recompute = recompute.apply(program.graph, program.forward_nodes, program.memory_budget,
                                        src.loc(src.node))


# ---- train steps ------------------------------------------------------------------------

def optimizer_updates(program: Program):
    """The optimizer's update rules appended as kernels (transforms/update.py)."""
    update.append_updates(program)


def fuse_keeping_gradients(program: Program):
    # gradients stay statements of their own (no earlier value is fused past an in-place write)
    fuse_elementwise(program.graph, keep=results(program) + program.graph.params + program.grads)
    for body, keep in bodies(program):
        fuse_elementwise(body, keep=keep)


def inline_update_scalars(program: Program):
    inline_scalars(program.graph, program.update_nodes, set(results(program)))


def check_update_order(program: Program):
    program.update_nodes &= set(program.graph.nodes)
    update.check_no_stale_reads(program.graph, program.updates, program.update_nodes)


# ---- forward mode and higher order (sb.jvp, vjp, jacobian, hessian, hvp) ----------------------------

#: the entry points whose function may return an array
ARRAY_VALUED = ("jvp", "vjp", "jacobian", "vmap")


def _set_wrt(program):
    graph = program.graph
    params = {p.name: p for p in graph.params}
    program.wrt_values = [params[program.specs[i].name] for i in program.wrt]
    program.forward_nodes = set(graph.nodes)


def extra_input(program, base, like):
    """A new argument of the generated function (a tangent, a cotangent) shaped like the value `like`,
    named `base` (or base_2, ... when the model has that name)."""
    taken = {s.name for s in program.specs}
    name, k = base, 2
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    kind = "float" if like.weak and like.shape == () else "array"
    program.specs = program.specs + (Spec(name, kind, like.shape, like.dtype),)
    v = Value(like.shape, like.dtype, None, name)
    v.weak = kind == "float"
    program.graph.params.append(v)
    return v


def _zero(v, batch=()):
    return ops.fill(0.0, tuple(batch) + v.shape, v.dtype)


def _outputs(program, values):
    """The entry point's arrays become what the generated code returns (the aux of a forward), followed
    by the model's own aux arrays under has_aux=True; the value returned beside them is the model's
    loss when it has one, else 0."""
    graph = program.graph
    program.model_result = graph.result
    model_aux, model_tree = list(graph.aux), program.aux_tree
    graph.aux = []
    src = Source(program.fn)
    half = _half_dtype(program.specs)
    if half is not None:  # derivatives of a 16-bit model, computed in float32, given in its dtype
        with building(graph):
            values = [_narrowed(v, half) for v in values]
    program.aux_tree = _flatten_aux(tuple(values), graph.aux, _return_loc(src), "out")
    program.entry_outputs = len(graph.aux)
    if program.has_aux:  # the model's aux: never differentiated, computed by the same forward pass
        program.model_aux = True
        graph.aux.extend(model_aux)
        program.aux_tree = (program.aux_tree, _shifted(model_tree, program.entry_outputs))
    program.has_aux = True
    program.grads = []
    if graph.result.shape != () or not dtypes.is_float(graph.result.dtype):
        graph.result = ops.fill(0.0, (), np.float64)


def _shifted(tree, by):
    """An aux tree whose Leaf k is now Leaf k + by."""
    if isinstance(tree, Leaf):
        return Leaf(tree.index + by)
    if isinstance(tree, (tuple, list)):
        return type(tree)(_shifted(t, by) for t in tree)
    if isinstance(tree, dict):
        return {k: _shifted(v, by) for k, v in tree.items()}
    return tree


def basis(v):
    """The standard basis of `v`'s entries as a constant: (n,) + v.shape, direction k the k-th entry."""
    n = v.size
    dtype = "" if v.dtype == np.float64 else f", dtype=np.{v.dtype}"
    text = f"np.eye({n}{dtype})" + (f".reshape({(n,) + v.shape})" if v.shape != (n,) else "")
    return constant(np.eye(n, dtype=v.dtype).reshape((n,) + v.shape), text)


def _block(t, out, param, batch_first):
    """A Jacobian block (out.shape + param.shape) from the tangent `t` of `out`: batch axis over the
    parameter's entries (forward mode: moved to the back) or over the result's (reverse mode)."""
    if t is None:
        return _zero(out, param.shape)
    if not batch_first:
        if out.ndim:
            t = ops.transpose(t, tuple(range(1, t.ndim)) + (0,))
    return ops.reshape(t, out.shape + param.shape)


def jvp_mode(program):
    """Forward mode: one tangent input t_<x> per wrt parameter; the value and its tangent."""
    _set_wrt(program)
    graph = program.graph
    with building(graph):
        seeds = {p: extra_input(program, "t_" + p.name, p) for p in program.wrt_values}
        tangents = forward(graph, seeds)
        out = graph.result
        t = tangents.get(out)
        _outputs(program, [out, t if t is not None else _zero(out)])
    _with_forward_tangents(program)


def vjp_mode(program):
    """Reverse mode seeded by a cotangent input d_<out>: the value and one gradient per wrt parameter."""
    _set_wrt(program)
    graph = program.graph
    out = graph.result
    with building(graph):
        seed = extra_input(program, "d_" + out.name, out)
        grads = reverse(graph, program.wrt_values, seed=seed)
    rewiden_residuals(graph, program.forward_nodes)
    with building(graph):
        _outputs(program, [out, *grads])
    _with_forward_tangents(program)


def jacobian_mode(program):
    """The Jacobian of each wrt parameter, its basis as a leading batch axis through one program (see
    _jacobian_blocks); program.mode says which way it went."""
    _set_wrt(program)
    graph = program.graph
    out = graph.result
    params = program.wrt_values
    program.mode = _jacobian_way(out, params)
    with building(graph):
        _outputs(program, _jacobian_blocks(graph, out, params))
    _with_forward_tangents(program)


def _jacobian_way(out, params):
    return "forward" if sum(p.size for p in params) <= out.size else "reverse"


def _jacobian_blocks(graph, out, params):
    """One Jacobian block per parameter (out.shape + p.shape), built into `graph`: forward mode along the
    parameters' basis when they have no more entries than the result, else reverse mode seeded by a
    cotangent u and forward mode along u's basis (the backward pass is linear in u, so its tangent along
    basis vector k is row k of the Jacobian)."""
    nodes = snapshot(graph)
    if _jacobian_way(out, params) == "forward":
        return [_block(forward(graph, {p: basis(p)}, (p.size,), nodes).get(out), out, p, batch_first=False)
                for p in params]
    u = Value(out.shape, out.dtype, None, "d_" + (out.name or "out"))
    grads = reverse(graph, params, seed=u)
    tangents = forward(graph, {u: basis(u)}, (out.size,))
    return [_block(tangents.get(g), out, p, batch_first=True) for g, p in zip(grads, params)]


def hvp_mode(program):
    """Forward over reverse: the tangent of the gradient along t_<x>, through the forward and backward
    passes together (the Hessian is never formed)."""
    graph = program.graph
    with building(graph):
        seeds = {p: extra_input(program, "t_" + p.name, p) for p in program.wrt_values}
        tangents = forward(graph, seeds)
        _outputs(program, [tangents.get(g) if tangents.get(g) is not None else _zero(g) for g in program.grads])
    _with_forward_tangents(program)


def hessian_mode(program):
    """The Hessian's blocks H[i][j] = d grad_i / d x_j: forward over reverse along each parameter's basis,
    carried as a leading batch axis (row-major blocks in the outputs)."""
    graph = program.graph
    grads, params = program.grads, program.wrt_values
    with building(graph):
        nodes = snapshot(graph)
        columns = [forward(graph, {p: basis(p)}, (p.size,), nodes) for p in params]
        blocks = [_block(columns[j].get(g), g, p, batch_first=False)
                  for g in grads for j, p in enumerate(params)]
        _outputs(program, blocks)
    _with_forward_tangents(program)


def share_subexpressions(program):
    """What several kernels of a derivative program compute (forward, backward and tangent kernels alike)
    is computed once and read by the others: every repeated operation on NumPy, what holds a
    transcendental on a backend fusing loops (passes/share.py); so within each region's body (a loop body
    and its tangents, a replay step and its tangents)."""
    worth = transcendental if program.backend.fuses_across_statements else everything
    share_across_kernels(program.graph, keep=results(program) + program.graph.params, worth=worth)
    for body, keep in bodies(program):
        share_across_kernels(body, keep=keep + body.params, worth=worth)


def _with_forward_tangents(program):
    """The tangents of forward values belong to the forward pass: what the backward pass reads of them is
    a residual, as the forward values it reads are (memory_budget may recompute them). The graph is put
    in that order, the forward pass and its tangents before the backward pass and its, so that a later
    pass sharing work between kernels (share_subexpressions) never makes a forward kernel read a
    backward one's value."""
    graph = program.graph
    origin = graph.tangent_origin
    program.traced_forward = set(program.forward_nodes)
    program.forward_nodes = program.forward_nodes | {n for n, o in origin.items() if o in program.forward_nodes}
    _forward_closed(program)  # a basis constant the forward tangents read is forward too
    forward_part = [n for n in graph.nodes if n in program.forward_nodes]
    graph.nodes = forward_part + [n for n in graph.nodes if n not in program.forward_nodes]


# ---- batching (sb.vmap, sb.per_example_grad) ---------------------------------------------------------

def trace_per_example(program):
    """The model traced on one example's shapes: each mapped argument without its batch axis (sb.vmap),
    or with it of size 1 (per_example_grad, so that a model written for a batch sees a batch of one)."""
    axes = batch_axes(program)
    sizes = {}
    for s, axis in zip(program.specs, axes):
        if axis is not None:
            sizes.setdefault(s.shape[axis], []).append(s.name)
    if not sizes:
        raise ValueError(f"{program.fn.__name__}(): no argument has an axis to map over (in_axes="
                         f"{program.in_axes!r}); pass at least one array with a batch axis")
    if len(sizes) > 1:
        listed = "; ".join(f"{', '.join(f'`{name}`' for name in names)}: {n}" for n, names in sizes.items())
        raise ValueError(f"{program.fn.__name__}(): the mapped arguments have different batch sizes ({listed})")
    (program.batch_size,) = sizes
    full = program.specs
    program.specs = tuple(s if axis is None else Spec(s.name, s.kind, _example_shape(s.shape, axis, program),
                                                      s.dtype) for s, axis in zip(full, axes))
    program.batch_axes = axes
    try:
        trace_model(program)
    finally:
        program.specs = full


def _example_shape(shape, axis, program):
    if program.keep_batch_axis:
        return shape[:axis] + (1,) + shape[axis + 1:]
    return shape[:axis] + shape[axis + 1:]


def batch_axes(program) -> tuple:
    """Per spec, the axis mapped over or None. per_example_grad maps every array argument that is not
    differentiated (the data) along its batch axis; sb.vmap's in_axes is an int for every array with
    axes, or one entry (an int or None) per parameter of the model."""
    specs, option = program.specs, program.in_axes
    if program.keep_batch_axis:
        wanted = [s.kind == "array" and s.shape != () and i not in program.wrt for i, s in enumerate(specs)]
        per_spec = [option if w else None for w in wanted]
    elif isinstance(option, (int, np.integer)) and not isinstance(option, bool):
        per_spec = [option if s.kind == "array" and s.shape != () else None for s in specs]
    else:
        per_param = list(option)
        if program.trees is None:
            per_spec = per_param
        else:  # each leaf of a tree parameter is mapped as its parameter says
            per_spec = [None] * len(specs)
            for axis, t in zip(per_param, program.trees):
                for k in ([t] if isinstance(t, int) else [q.index for q in slots(t)]):
                    per_spec[k] = axis
    out = []
    for s, axis in zip(specs, per_spec):
        if axis is None:
            out.append(None)
            continue
        if s.kind != "array" or not -len(s.shape) <= axis < len(s.shape):
            what = f"an array of shape {s.shape}" if s.kind == "array" else "a number" if s.kind == "float" \
                else f"the value {s.value!r}"
            raise ValueError(f"{program.fn.__name__}(): in_axes maps `{s.name}` over axis {axis}, but it is {what}")
        out.append(int(axis) % len(s.shape))
    return tuple(out)


def batch_mode(program):
    """The per-example graph rebuilt for the whole batch (transforms/batching.py): the generated function
    takes the batched arguments and returns the results with a leading batch axis."""
    old, n = program.graph, program.batch_size
    graph = Graph()
    with building(graph):
        inputs, batched = {}, {}
        dynamic = [i for i, s in enumerate(program.specs) if s.kind != "static"]
        for i, p in zip(dynamic, old.params):
            s = program.specs[i]
            v = Value(s.shape, s.dtype, None, s.name)
            v.weak = s.kind == "float"
            graph.params.append(v)
            axis = program.batch_axes[i]
            if axis is not None:
                if axis:
                    v = ops.transpose(v, (axis,) + tuple(d for d in range(v.ndim) if d != axis))
                v = ops.reshape(v, (n,) + p.shape)
                batched[p] = True
            inputs[p] = v
        values, flags = batching.batch(old, inputs, batched, n)
        if program.kind == "vmap":
            wanted = [old.result]
        else:
            wanted = ([old.result] if program.batch_value else []) + list(program.grads)
        outs = [ops.batched(values[v], flags[v], n) for v in wanted]
        graph.result = values[old.result]
        program.graph = graph
        program.forward_nodes = set()
        program.wrt_values = []
        _outputs(program, outs)


def as_forward(program):
    """The backend builds the finished program as a forward returning its outputs."""
    program.kind = "forward"


FORWARD = (trace_model, recognise_patterns, drop_dead_forward, fuse_statements, store_16_bit)
PER_EXAMPLE = (trace_per_example,) + FORWARD[1:]
GRADIENT = FORWARD + (reverse_mode,)
VALUE_AND_GRAD = GRADIENT + (without_stop_gradients, drop_dead, narrow, fuse_for_backend, drop_dead, finalize,
                             checkpoint)
LOSS = (trace_model, recognise_patterns, without_stop_gradients, drop_dead_forward, fuse_statements, store_16_bit,
        finalize)
TRAIN_STEP = GRADIENT + (without_stop_gradients, optimizer_updates, drop_dead, fuse_keeping_gradients, inline_update_scalars,
                         drop_dead, finalize, checkpoint, check_update_order)

OUTPUTS = (without_stop_gradients, drop_dead, narrow, fuse_for_backend, drop_dead, finalize, as_forward)
DERIVATIVE_OUTPUTS = (without_stop_gradients, drop_dead_in_regions, narrow, fuse_for_backend, drop_dead,
                      share_subexpressions, finalize, checkpoint, as_forward)
JVP = FORWARD + (jvp_mode,) + DERIVATIVE_OUTPUTS
VJP = FORWARD + (vjp_mode,) + DERIVATIVE_OUTPUTS
JACOBIAN = FORWARD + (jacobian_mode,) + DERIVATIVE_OUTPUTS
HVP = GRADIENT + (hvp_mode,) + DERIVATIVE_OUTPUTS
HESSIAN = GRADIENT + (hessian_mode,) + DERIVATIVE_OUTPUTS
VMAP = PER_EXAMPLE + (without_stop_gradients, drop_dead, batch_mode) + OUTPUTS
PER_EXAMPLE_GRAD = PER_EXAMPLE + (reverse_mode, without_stop_gradients, drop_dead, batch_mode) + OUTPUTS

#: the stages of each kind of Program
STAGES = {"forward": LOSS, "gradient": GRADIENT, "value_and_grad": VALUE_AND_GRAD, "train_step": TRAIN_STEP,
          "jvp": JVP, "vjp": VJP, "jacobian": JACOBIAN, "hvp": HVP, "hessian": HESSIAN,
          "vmap": VMAP, "per_example_grad": PER_EXAMPLE_GRAD}


#: the derivative entry points' kinds
ENTRIES = ("jvp", "vjp", "jacobian", "hvp", "hessian", "vmap", "per_example_grad")


#: each derivative entry point's stage that differentiates (explain reads the graph right after it)
MODES = {"jvp": jvp_mode, "vjp": vjp_mode, "jacobian": jacobian_mode, "hvp": hvp_mode, "hessian": hessian_mode}


def build_rules(fn, specs, backend, entry, **fields) -> Program:
    """A derivative entry point's Program up to its differentiating stage: each statement's kernels as the
    model wrote them, the backward pass and the tangents as their rules built them, nothing fused across
    statements or shared (what explain tabulates)."""
    stage_list = STAGES[entry]
    return run(Program(fn, tuple(specs), backend, entry, entry=entry, **fields),
               stage_list[:stage_list.index(MODES[entry]) + 1])


def build(fn, specs, backend, kind="value_and_grad", **fields) -> Program:
    """The Program of `kind` for `fn` on `specs`, through all its stages (not yet given to the backend).

    A train step accumulating gradients over k calls is two Programs, built together: the updating one
    (returned) and, as its `accumulating`, the one the other k - 1 calls run.
    """
    if kind in ENTRIES:
        fields = {**fields, "entry": kind}
    program = run(Program(fn, tuple(specs), backend, kind, **fields), STAGES[kind])
    if kind == "train_step" and program.accumulate > 1 and program.phase == "update":
        program.accumulating = run(Program(fn, tuple(specs), backend, kind, **{**fields, "phase": "accumulate"}),
                                   STAGES[kind])
    return program
