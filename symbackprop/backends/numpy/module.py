"""The generated NumPy modules: value_and_grad, the forward alone, the train step, and their exports.

Each is a jinja2 template (templates/numpy_module.py.j2) around functions the
writer prints statement by statement, commented with the model's lines.
"""
from __future__ import annotations

import textwrap

from ...rendering import render
from ...transforms.update import unique_name
from ..base import load
from .printer import NumpyPrinter
from .writer import write_function, write_statements, writing


def aux_options(program) -> dict:
    """write_function's aux arguments: the arrays and the tree's source (has_aux=True), or none."""
    if not program.has_aux:
        return {}
    return {"aux": program.graph.aux, "aux_text": program.aux_text}


def _function_text(compiled, name, nodes, grads, scalar, forward_nodes):
    specs = compiled.specs
    params = compiled.graph.params
    grad_specs = [specs[i] for i in compiled.wrt] if grads is not None else None
    what = ("the loss, aux and the gradient" if compiled.has_aux else "the loss and its gradient") \
        if grads is not None else _what(compiled)
    doc = f"{compiled.fn.__name__}: {what}" + (
        f" with respect to {', '.join(specs[i].name for i in compiled.wrt)}." if grads is not None else ".")
    return write_function(name, params, specs, nodes, forward_nodes, compiled.graph.result, grads, grad_specs,
                         doc, scalar=scalar, single=compiled.single, schedule=compiled.recompute, **aux_options(compiled))


def numpy_module(compiled, forward=None) -> str:
    """The generated module: value_and_grad (and `forward`, a loss Program, when given); math code with a NumPy fallback for scalars."""
    graph = compiled.graph
    functions, uses_math = [], False
    if forward is not None:
        text, m = forward_text(forward)
        functions.append(text)
        uses_math |= m
    if compiled.scalar:
        fast, _ = _function_text(compiled, "_value_and_grad_math", graph.nodes, compiled.grads, True,
                                 compiled.forward_nodes)
        slow, _ = _function_text(compiled, "_value_and_grad_numpy", graph.nodes, compiled.grads, False,
                                 compiled.forward_nodes)
        slow = _floats_as_numpy(slow, compiled)
        names = compiled.dynamic_names
        functions += [render("scalar_dispatch.py.j2", name="value_and_grad", params=names,
                             doc=f"{compiled.fn.__name__}: the loss and its gradient.",
                             fast="_value_and_grad_math", slow="_value_and_grad_numpy").rstrip("\n"),
                      fast.rstrip("\n"), slow.rstrip("\n")]
        uses_math = True
    else:
        text, _ = _function_text(compiled, "value_and_grad", graph.nodes, compiled.grads, False,
                                 compiled.forward_nodes)
        functions.append(text.rstrip("\n"))
    origin = f"{compiled.fn.__module__}.{compiled.fn.__qualname__}"
    notes = [f"Specialised for {', '.join(s.describe() for s in compiled.specs)}."]
    return render("numpy_module.py.j2", title=f"Gradient of `{compiled.fn.__name__}`.", origin=origin,
                  notes=notes, uses_math=uses_math, functions=functions)


def forward_text(forward):
    """The `forward` function of a loss Program (kind "forward"), and whether it is `math` code."""
    graph = forward.graph
    text, m = write_function("forward", graph.params, forward.specs, graph.nodes, set(graph.nodes),
                             graph.result, None, None, f"{forward.fn.__name__}: {_what(forward)}.",
                             scalar=forward.scalar, **aux_options(forward))
    return text.rstrip("\n"), m


def _what(program) -> str:
    return "the loss and aux" if program.has_aux else "the loss"


def values_function(params, nodes, outputs, title, aliases=()):
    """A loaded function of `params` returning the tuple of `outputs`, computed by `nodes` in order:
    a piece of a graph run on its own, for tools (check_grad runs each forward node with its adjoint
    alone). `aliases` are (value, source) pairs, in order, of values not computed but read as their
    source (a sb.stop_gradient's output, which no backend computes, is its input). Returns (source, function)."""
    with writing(NumpyPrinter, params) as writer:
        for v, source in aliases:
            writer.inline[v] = writer.arg(source)
        lines = write_statements(writer, list(nodes))
        returned = [writer.arg(v) for v in outputs]
    ret = "(" + ", ".join(returned) + ("," if len(returned) == 1 else "") + ")"
    text = render("numpy_function.py.j2", name="values", params=[p.name for p in params], doc=title,
                  errstate=False, indent="    ", sections=[{"title": "values", "lines": lines}], ret=ret)
    source = render("numpy_module.py.j2", title=title, origin="a piece of a graph", notes=[], uses_math=False,
                    functions=[text.rstrip("\n")])
    return source, load(source, f"<symbackprop {title}>")["values"]


def _floats_as_numpy(text, compiled):
    """The NumPy fallback first turns Python floats into float64 scalars, so 1/0 gives inf."""
    lines = text.split("\n")
    body = next(i for i, l in enumerate(lines) if l.strip().endswith('"""') and i > 0)
    conv = [f"    {s.name} = np.float64({s.name})" for s in compiled.specs if s.kind == "float"]
    return "\n".join(lines[:body + 1] + conv + lines[body + 1:])


def export_python(compiled, forward) -> str:
    """The standalone module: forward(...) and value_and_grad(...) with the model's parameters."""
    text = numpy_module(compiled, forward)
    statics = [s for s in compiled.specs if not s.dynamic]
    if not statics:
        return text
    # static parameters were fixed at specialisation: accept them, check them, drop them
    text = text.replace("\ndef forward(", "\ndef _forward(").replace("\ndef value_and_grad(", "\ndef _value_and_grad(")
    text = text.replace("return _value_and_grad_math(", "return _value_and_grad_math(")
    return text.rstrip("\n") + "\n" + render(
        "static_wrappers.py.j2", specs=compiled.specs,
        dynamic=[s.name for s in compiled.specs if s.dynamic])


# ---- train steps ----------------------------------------------------------------------

def step_function_text(compiled) -> str:
    names = ", ".join(compiled.specs[i].name for i in compiled.wrt)
    if compiled.phase == "accumulate":
        doc = f"{compiled.fn.__name__}: the loss; adds the gradients of {names} to their sums, in place."
        title = "accumulate: each gradient added to its sum, in place"
    else:
        doc = f"{compiled.fn.__name__}: the loss; one {type_name(compiled)} step on {names} and the state, in place."
        title = f"update: {type_name(compiled)}, in place"
    text, _ = write_function(compiled.core, compiled.graph.params, compiled.specs, compiled.graph.nodes,
                            compiled.forward_nodes, compiled.graph.result, None, None, doc,
                            updates=compiled.updates, update_nodes=compiled.update_nodes, update_title=title,
                            schedule=compiled.recompute, **aux_options(compiled))
    return text.rstrip("\n")


def _wrap(items, opening, width=110):
    """Comma-separated `items`, broken into lines aligned after `opening`."""
    return textwrap.fill(", ".join(items), width - len(opening), subsequent_indent=" " * len(opening),
                         break_long_words=False, break_on_hyphens=False)


def type_name(compiled) -> str:
    return compiled.optimizer_text.split("(")[0]


def _state_reads(state_arg, compiled) -> list:
    reads = [f'{state_arg}["{n}"]' for n, _ in compiled.state]
    if compiled.step_name:
        reads.append(f'{state_arg}["{compiled.step_name}"]')
    return reads


def step_module(compiled, forward=None) -> str:
    """The module: init_state, train_step (state in a dict) and the generated step function (with
    accumulation, also the function the other calls run)."""
    specs = compiled.specs
    wrt = [specs[i].name for i in compiled.wrt]
    functions = []
    statics = [s for s in specs if not s.dynamic]
    with_forward = forward is not None
    if with_forward:
        text = forward_text(forward)[0]
        # with static parameters, forward takes them all and checks them (see the template)
        functions.append(text.replace("def forward(", "def _forward(", 1) if statics else text)
    taken = {s.name for s in specs}
    state_arg = unique_name("state", taken)
    state = [{"name": n, "param": p} for n, p in compiled.state]
    state_reads = _state_reads(state_arg, compiled)
    dynamic = [s.name for s in specs if s.dynamic]
    partner = compiled.accumulating
    accumulate_call = None if partner is None else partner.core + "(" + _wrap(
        dynamic + _state_reads(state_arg, partner), f"        return {partner.core}(") + ")"
    dtype = compiled.hyper_dtype.name
    defaults = compiled.hyper_defaults
    functions.append(render(
        "train_step.py.j2", wrt=wrt, optimizer=type_name(compiled), buffers=compiled.buffers,
        state=state, step=compiled.step_name, dtype=dtype, state_arg=state_arg,
        statics=statics, with_forward=with_forward, params=[s.name for s in specs], dynamic=dynamic,
        accumulate=compiled.accumulate, accumulate_call=accumulate_call,
        signature=_wrap([s.name for s in specs] + [state_arg] + [f"{name}={defaults[attr]!r}"
                                                                for name, attr in compiled.hyper], "def train_step("),
        call=compiled.core + "(" + _wrap([s.name for s in specs if s.dynamic] + state_reads
                                         + [f"np.{dtype}({name})" for name, _ in compiled.hyper],
                                         f"    return {compiled.core}(") + ")").rstrip("\n"))
    functions.append(step_function_text(compiled))
    if partner is not None:
        functions.append(step_function_text(partner))
    origin = f"{compiled.fn.__module__}.{compiled.fn.__qualname__}"
    notes = [f"Specialised for {', '.join(s.describe() for s in specs)}.",
             f"Optimizer: {compiled.optimizer_text}; its hyperparameters are inputs of `{compiled.core}`.",
             f"`{compiled.core}` updates {', '.join(wrt)} and the optimizer state in place and returns the loss."]
    if compiled.clip_norm is not None:
        notes.append("The gradients are first clipped to the global norm clip_norm (an input).")
    if partner is not None:
        notes.append(f"Gradients are accumulated over {compiled.accumulate} calls: `{partner.core}` adds them "
                     f"to sums in the state, and once every {compiled.accumulate} calls `{compiled.core}` "
                     "updates with their sum.")
    return render("numpy_module.py.j2", title=f"Training step for `{compiled.fn.__name__}`.", origin=origin,
                  notes=notes, uses_math=False, functions=functions)
