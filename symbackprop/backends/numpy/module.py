"""The generated NumPy modules: value_and_grad, the forward alone, the train step, and their exports.

Each is a jinja2 template (templates/numpy_module.py.j2) around functions the
writer prints statement by statement, commented with the model's lines.
"""
from __future__ import annotations

import inspect
import textwrap

from ...dtypes import text as dtype_text
from ...frontend.signature import Slot
from ...rendering import render, source_literal
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


EXPORT_NOTE = "Each function refuses another shape, dtype or value (TypeError, ValueError): one export per specialisation."


def numpy_module(compiled, forward=None, notes=()) -> str:
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
    notes = [f"Specialised for {', '.join(s.describe() for s in compiled.specs)}.", *notes]
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
    """The standalone module: forward(...) and value_and_grad(...) with the model's parameters, each
    checking every argument against the specialisation before calling the generated code."""
    text = numpy_module(compiled, forward, [EXPORT_NOTE])
    # the generated functions become private; the public ones check their arguments and call them
    text = text.replace("\ndef forward(", "\ndef _forward(").replace("\ndef value_and_grad(", "\ndef _value_and_grad(")
    head, sep, rest = text.partition("\nimport numpy as np\n")
    specs = compiled.specs
    signature = model_signature(compiled.fn, specs)
    checks = check_lines(specs)
    call = ", ".join(s.name for s in specs if s.dynamic)
    wrt = ", ".join(specs[i].name for i in compiled.wrt)
    wrappers = [render("export_function.py.j2", name="forward", signature=signature, checks=checks,
                       doc=f"{compiled.fn.__name__}: the loss (each argument checked against the specialisation).",
                       body=[f"return _forward({call})"]),
                render("export_function.py.j2", name="value_and_grad", signature=signature, checks=checks,
                       doc=f"{compiled.fn.__name__}: the loss and its gradient with respect to {wrt} (each "
                           "argument checked).",
                       body=[f"return _value_and_grad({call})"])]
    if compiled.trees is not None:
        wrappers = [w.replace("\ndef forward(", "\ndef forward_leaves(", 1).replace(
            "\ndef value_and_grad(", "\ndef value_and_grad_leaves(", 1).replace(
            "def forward(", "def forward_leaves(", 1).replace("def value_and_grad(", "def value_and_grad_leaves(", 1)
            for w in wrappers] + tree_functions(compiled)
    return (head + sep + "\n\n" + checks_text(specs) + rest.rstrip("\n") + "\n\n\n"
            + "\n\n".join(w.rstrip("\n") + "\n" for w in wrappers))


def export_entry(compiled) -> str:
    """A derivative entry point's standalone module (sb.jvp, vjp, jacobian, hessian, hvp): the generated
    function, private, and a public one named after the entry point, with the model's parameters and
    the direction's, checking each argument and returning what the compiled callable returns."""
    graph = compiled.graph
    text, uses_math = module_forward_text(compiled, "_outputs")
    source = render("numpy_module.py.j2", title=f"{ENTRY_TITLES[compiled.entry]} of `{compiled.fn.__name__}`.",
                    origin=f"{compiled.fn.__module__}.{compiled.fn.__qualname__}",
                    notes=[f"Specialised for {', '.join(s.describe() for s in compiled.specs)}.", EXPORT_NOTE],
                    uses_math=uses_math, functions=[text])
    head, sep, rest = source.partition("\nimport numpy as np\n")
    specs = compiled.specs
    names = [s.name for s in specs if s.dynamic]
    n_outs = compiled.entry_outputs if compiled.model_aux else len(graph.aux)
    outs = [f"o{k}" for k in range(n_outs)]
    single = compiled.single
    if compiled.entry == "jvp":
        ret = "o0, o1"
    elif compiled.entry == "vjp":
        rest_ = outs[1:]
        ret = f"o0, {rest_[0] if single else '(' + ', '.join(rest_) + (',)' if len(rest_) == 1 else ')')}"
    elif compiled.entry == "hessian" and not single:
        k = len(compiled.wrt)
        ret = "(" + ", ".join("(" + ", ".join(outs[i * k:(i + 1) * k]) + ")" for i in range(k)) + ")"
    else:
        ret = outs[0] if single else "(" + ", ".join(outs) + (",)" if len(outs) == 1 else ")")
    unpacked = f"({', '.join(outs)}{',' if n_outs == 1 else ''})"
    if compiled.model_aux:  # has_aux=True: the model's aux after the entry point's arrays, as the callable
        unpacked = f"({unpacked}, aux)"
        ret = f"({ret.split(', ', 1)[0]}, aux), {ret.split(', ', 1)[1]}" if compiled.entry in ("jvp", "vjp") \
            else f"{ret}, aux"
    body = [f"_, {unpacked} = _outputs({', '.join(names)})", f"return {ret}"]
    wrapper = render("export_function.py.j2", name=compiled.entry, signature=", ".join(s.name for s in specs),
                     checks=check_lines(specs),
                     doc=f"{compiled.fn.__name__}: {ENTRY_TITLES[compiled.entry].lower()} (each argument checked).",
                     body=body)
    return head + sep + "\n\n" + checks_text(specs) + rest.rstrip("\n") + "\n\n\n" + wrapper.rstrip("\n") + "\n"


ENTRY_TITLES = {"jvp": "Value and directional derivative (forward mode)", "vjp": "Value and vector-Jacobian product",
                "jacobian": "Jacobian", "hessian": "Hessian", "hvp": "Hessian-vector product (forward over reverse)",
                "vmap": "The model mapped over a batch (sb.vmap)",
                "per_example_grad": "Per-example gradients, a leading batch axis"}


def entry_module(compiled) -> str:
    """The generated module of a derivative entry point: `forward(...)` returning (0 or the loss, outputs)."""
    text, uses_math = module_forward_text(compiled, "forward")
    return render("numpy_module.py.j2", title=f"{ENTRY_TITLES[compiled.entry]} of `{compiled.fn.__name__}`.",
                  origin=f"{compiled.fn.__module__}.{compiled.fn.__qualname__}",
                  notes=[f"Specialised for {', '.join(s.describe() for s in compiled.specs)}."],
                  uses_math=uses_math, functions=[text])


def module_forward_text(compiled, name):
    graph = compiled.graph
    text, m = write_function(name, graph.params, compiled.specs, graph.nodes, set(graph.nodes), graph.result,
                             None, None, f"{compiled.fn.__name__}: {ENTRY_TITLES[compiled.entry].lower()}.",
                             **aux_options(compiled))
    return text.rstrip("\n"), m


def tree_functions(compiled) -> list:
    """forward(...) and value_and_grad(...) taking the model's parameter trees: each tree's leaves (in
    flattening order) go to the *_leaves functions, and the gradients come back as trees."""
    names = list(inspect.signature(compiled.fn).parameters)
    leaves = {}
    for name, t in zip(names, compiled.trees):
        if isinstance(t, int):
            leaves[t] = name
        else:
            leaves.update(dict(tree_paths(t, name)))
    call = ", ".join(leaves[i] for i, s in enumerate(compiled.specs) if s.dynamic)
    position = {i: k for k, i in enumerate(compiled.wrt)}
    grads = []
    for i in compiled.tree_wrt:
        t = compiled.trees[i]
        grads.append(f"g[{position[t]}]" if isinstance(t, int) else
                     tree_source(without_statics(t), lambda k: f"g[{position[k]}]"))
    tree = grads[0] if compiled.tree_single else "(" + ", ".join(grads) + ("," if len(grads) == 1 else "") + ")"
    signature = ", ".join(names)
    return [f"def forward({signature}):\n"
            f"    \"\"\"{compiled.fn.__name__} on its parameter trees: the loss.\"\"\"\n"
            f"    return forward_leaves({call})\n",
            f"def value_and_grad({signature}):\n"
            f"    \"\"\"{compiled.fn.__name__} on its parameter trees: the loss and the gradient, trees as the "
            "parameters (None at leaves that steer control flow).\"\"\"\n"
            f"    value, g = value_and_grad_leaves({call})\n"
            f"    return value, {tree}\n"]


def tree_paths(tree, prefix) -> list:
    """(Slot index, Python expression) of each leaf of a parameter tree: `params["layers"][0][1]`."""
    if isinstance(tree, Slot):
        return [(tree.index, prefix)]
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, (tuple, list)) else ()
    return [p for k, v in items for p in tree_paths(v, f"{prefix}[{source_literal(k)}]")]


def tree_source(tree, leaf) -> str:
    """A parameter tree as Python source: `leaf(k)` for the leaf at Slot k, None at a static leaf."""
    if isinstance(tree, tuple):
        items = [tree_source(t, leaf) for t in tree]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(tree, list):
        return "[" + ", ".join(tree_source(t, leaf) for t in tree) + "]"
    if isinstance(tree, dict):
        return "{" + ", ".join(f"{source_literal(k)}: {tree_source(v, leaf)}" for k, v in tree.items()) + "}"
    return leaf(tree.index) if isinstance(tree, Slot) else "None"


def without_statics(tree):
    if isinstance(tree, dict):
        return {k: without_statics(v) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(without_statics(v) for v in tree)
    return tree if isinstance(tree, Slot) else None


# ---- the argument checks of an exported module -----------------------------------------------

def _literal(value):
    """`value` as Python source when it can be written as a default into a signature, else None."""
    if value is None or type(value) in (bool, int, float, str):
        return source_literal(value)
    if type(value) is tuple and all(_literal(v) is not None for v in value):
        return source_literal(value)
    return None


def model_signature(fn, specs, tail=(), width=110, opening=None):
    """The parameter list of an exported function: the model's parameters (kinds and markers as its
    def, the defaults that can be written as literals kept), then `tail`, (name, default text or None)
    pairs. A tail entry without a default after kept model defaults gets None (and a check)."""
    parameters = list(inspect.signature(fn).parameters.values())
    if [p.name for p in parameters] != [s.name for s in specs]:  # a model taking *args: as the specs
        parameters = [inspect.Parameter(s.name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for s in specs]
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    kept = {}
    for p in reversed(positional):  # a default is kept only if every later positional one is
        text = None if p.default is p.empty else _literal(p.default)
        if text is None:
            break
        kept[p.name] = text
    for p in parameters:
        if p.kind is p.KEYWORD_ONLY and p.default is not p.empty and _literal(p.default) is not None:
            kept[p.name] = _literal(p.default)
    items, star = [], False
    for k, p in enumerate(parameters):
        if p.kind is p.KEYWORD_ONLY and not star:
            items.append("*")
            star = True
        items.append(f"{p.name}={kept[p.name]}" if p.name in kept else p.name)
        if p.kind is p.POSITIONAL_ONLY and (k + 1 == len(parameters) or parameters[k + 1].kind is not p.POSITIONAL_ONLY):
            items.append("/")
    defaults_before = any(p.name in kept for p in positional) and not star
    for name, default in tail:
        if default is None and defaults_before:
            default = "None"
        items.append(name if default is None else f"{name}={default}")
        defaults_before |= default is not None
    return _wrap(items, opening) if opening else ", ".join(items)


def check_lines(specs) -> list:
    """One line per argument checking it against its spec (the helpers are checks_text's)."""
    lines = []
    for s in specs:
        if s.kind == "array":
            lines.append(f'_array("{s.name}", {s.name}, {s.shape!r}, _{s.dtype.name})')
        elif s.kind == "float":
            lines.append(f'{s.name} = _float("{s.name}", {s.name})')
        else:
            lines.append(f'_static("{s.name}", {s.name}, {source_literal(s.value)})')
    return lines


def checks_text(specs, state=False, extra_dtypes=(), floats=False) -> str:
    """The helpers at the top of an exported module that check_lines' lines call."""
    kinds = {s.kind for s in specs}
    dtypes = sorted({s.dtype.name for s in specs if s.kind == "array"} | set(extra_dtypes))
    return render("export_checks.py.j2", dtypes=dtypes, arrays=bool(dtypes), floats=floats or "float" in kinds,
                  statics="static" in kinds, state=state).rstrip("\n") + "\n"


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
    accumulation, also the function the other calls run); with `forward`, also forward(...). The public
    functions check their arguments against the specialisation (the helpers at the top)."""
    specs = compiled.specs
    wrt = [specs[i].name for i in compiled.wrt]
    taken = {s.name for s in specs}
    state_arg = unique_name("state", taken)
    state = [{"name": n, "param": p} for n, p in compiled.state]
    state_reads = _state_reads(state_arg, compiled)
    dynamic = [s.name for s in specs if s.dynamic]
    partner = compiled.accumulating
    dtype = compiled.hyper_dtype.name
    checks = check_lines(specs)
    functions = [checks_text(specs, state=True, extra_dtypes=[dtype] if compiled.step_name else [],
                             floats=bool(compiled.hyper))]
    if forward is not None:
        functions.append(forward_text(forward)[0].replace("def forward(", "def _forward(", 1))
        functions.append(render(
            "export_function.py.j2", name="forward", signature=model_signature(compiled.fn, specs), checks=checks,
            doc=f"{compiled.fn.__name__}: the loss (each argument checked against the specialisation).",
            body=[f"return _forward({', '.join(dynamic)})"]).rstrip("\n"))
    accumulate_call = None if partner is None else partner.core + "(" + _wrap(
        dynamic + _state_reads(state_arg, partner), f"        return {partner.core}(") + ")"
    defaults = compiled.hyper_defaults
    param_spec = {s.name: s for s in specs}
    keys = [n for n, _ in compiled.state] + ([compiled.step_name] if compiled.step_name else []) + (
        ["accumulated"] if partner is not None else [])
    key_set = "{" + ", ".join(f'"{k}"' for k in sorted(keys)) + "}" if keys else "set()"  # `{}` is a dict
    state_checks = [f'_state("{state_arg}", {state_arg}, {key_set})']
    state_checks += [f'_array(\'{state_arg}["{n}"]\', {state_arg}["{n}"], {param_spec[p].shape!r}, '
                     f'_{param_spec[p].dtype.name})' for n, p in compiled.state]
    if compiled.step_name:
        state_checks.append(f'_array(\'{state_arg}["{compiled.step_name}"]\', {state_arg}["{compiled.step_name}"], '
                            f'(), _{dtype})')
    hyper_checks = [f'{name} = _float("{name}", {name})' for name, _ in compiled.hyper]
    signature = model_signature(compiled.fn, specs, [(state_arg, None)] + [
        (name, repr(defaults[attr])) for name, attr in compiled.hyper], opening="def train_step(")
    functions.append(render(
        "train_step.py.j2", wrt=wrt, optimizer=type_name(compiled), buffers=compiled.buffers,
        state=state, step=compiled.step_name, dtype=dtype, state_arg=state_arg,
        accumulate=compiled.accumulate, accumulate_call=accumulate_call, signature=signature,
        init_checks=[line for line in checks if any(line.startswith(f'_array("{w}"') for w in wrt)],
        checks=checks + state_checks + hyper_checks,
        call=compiled.core + "(" + _wrap([s.name for s in specs if s.dynamic] + state_reads
                                         + [f"{dtype_text(dtype)}({name})" for name, _ in compiled.hyper],
                                         f"    return {compiled.core}(") + ")").rstrip("\n"))
    functions.append(step_function_text(compiled))
    if partner is not None:
        functions.append(step_function_text(partner))
    origin = f"{compiled.fn.__module__}.{compiled.fn.__qualname__}"
    notes = [f"Specialised for {', '.join(s.describe() for s in specs)}.", EXPORT_NOTE,
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
