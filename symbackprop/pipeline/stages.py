"""The stages, in order, and the lists each entry point runs.

A stage is a function `stage(program)` that reads and rewrites the Program's
graph (and the fields it declares). Adding a transform (checkpointing, forward
mode) is adding a stage here and to the lists that want it:

    FORWARD         trace -> softmax patterns -> dead code -> fuse each statement's chain
    GRADIENT        FORWARD -> reverse mode                         (what explain reads)
    VALUE_AND_GRAD  GRADIENT -> without stop_gradient -> dead code -> narrow -> fuse for the backend -> dead code
                    -> finalize -> checkpoint under the memory budget
    LOSS            trace -> patterns -> without stop_gradient -> dead code -> fuse -> finalize (the forward alone)
    TRAIN_STEP      GRADIENT -> without stop_gradient -> optimizer updates -> dead code -> fuse -> inline scalars -> dead code
                    -> finalize -> checkpoint under the memory budget -> check in-place order
"""
from __future__ import annotations

import ast
import numbers

import numpy as np

from ..errors import CompileError, Loc
from ..frontend.source import Source
from ..frontend.trace import Tracer
from ..ir import Graph, Value, append, building, has_regions
from ..passes.dce import drop_stop_gradients, eliminate_dead_code
from ..passes.fuse import finalize_kernels, fuse_elementwise, inline_scalars
from ..passes.narrow import narrow_kernel_outputs
from ..passes.patterns import recognise_softmax_family
from ..primitives import control, ops
from ..primitives.elementwise import Kernel, arg
from ..transforms import recompute, update
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
                args.append(v)
        result = Tracer().call_model(program.fn, args)
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
            if result.shape != ():
                raise CompileError(f"the model returns an array of shape {result.shape}; it must return one "
                                   "scalar (the loss)", loc, "Reduce it: return np.sum(x) or np.mean(x).")
            if result.dtype.kind not in "f":
                raise CompileError(f"the model returns a {result.dtype} value; the loss must be a float", loc)
            if result.node is None:  # returning a parameter: make it a node of its own
                result = _copy(result)
        else:
            result = ops.fill(float(result), (), np.float64)
        if result.name is None:
            result.name = "loss"
        graph.result = result
    program.graph = graph


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
    graphs = [program.graph]
    for body, _ in bodies(program):
        finalize_kernels(body)
        graphs.append(body)
    program.scalar = all(s.kind in ("float", "static") for s in program.specs) and all(
        v.shape == () for g in graphs for n in g.nodes for v in n.outputs)


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


FORWARD = (trace_model, recognise_patterns, drop_dead_forward, fuse_statements)
GRADIENT = FORWARD + (reverse_mode,)
VALUE_AND_GRAD = GRADIENT + (without_stop_gradients, drop_dead, narrow, fuse_for_backend, drop_dead, finalize,
                             checkpoint)
LOSS = (trace_model, recognise_patterns, without_stop_gradients, drop_dead_forward, fuse_statements, finalize)
TRAIN_STEP = GRADIENT + (without_stop_gradients, optimizer_updates, drop_dead, fuse_keeping_gradients, inline_update_scalars,
                         drop_dead, finalize, checkpoint, check_update_order)

#: the stages of each kind of Program
STAGES = {"forward": LOSS, "gradient": GRADIENT, "value_and_grad": VALUE_AND_GRAD, "train_step": TRAIN_STEP}


def build(fn, specs, backend, kind="value_and_grad", **fields) -> Program:
    """The Program of `kind` for `fn` on `specs`, through all its stages (not yet given to the backend).

    A train step accumulating gradients over k calls is two Programs, built together: the updating one
    (returned) and, as its `accumulating`, the one the other k - 1 calls run.
    """
    program = run(Program(fn, tuple(specs), backend, kind, **fields), STAGES[kind])
    if kind == "train_step" and program.accumulate > 1 and program.phase == "update":
        program.accumulating = run(Program(fn, tuple(specs), backend, kind, **{**fields, "phase": "accumulate"}),
                                   STAGES[kind])
    return program
