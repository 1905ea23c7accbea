"""The NumPy backend: generated NumPy (or `math`) source, loaded as Python, exported as a .py module."""
from __future__ import annotations

from ...rendering import render
from ..base import Artifact, Backend, load
from . import module
from .writer import write_function


def _taking_all_arguments(run, program):
    """`run` takes the dynamic arguments; the result takes the model's whole argument list."""
    dynamic = program.dynamic
    if len(dynamic) == len(program.specs):
        return run
    return lambda *a: run(*[a[i] for i in dynamic])


class NumpyBackend(Backend):
    name = "numpy"
    fuses_across_statements = False
    frees_at_last_use = False  # its locals live until it returns, but large ones (`del`; all under a budget)
    exports = (".py",)

    def build(self, program) -> Artifact:
        return getattr(self, "_build_" + program.kind)(program)

    def _build_value_and_grad(self, program):
        source = module.numpy_module(program)
        namespace = load(source, f"<symbackprop {program.fn.__name__}>")
        run = namespace["value_and_grad"]
        artifact = Artifact(source, _taking_all_arguments(run, program), run)
        if program.scalar:  # the fast path calls the `math` code and falls back to NumPy scalars
            artifact.fast = namespace["_value_and_grad_math"]
            artifact.fallback = namespace["_value_and_grad_numpy"]
        return artifact

    def _build_forward(self, program):
        if program.entry:  # sb.jvp, vjp, jacobian, hessian, hvp: NumPy code (no `math` fast path)
            source = module.entry_module(program)
            run = load(source, f"<symbackprop {program.entry} {program.fn.__name__}>")["forward"]
            return Artifact(source, _taking_all_arguments(run, program), run)
        fn, specs, graph = program.fn, program.specs, program.graph
        text, uses_math = module.forward_text(program)
        functions = [text]
        if program.scalar:  # math raises where NumPy gives inf or nan: fall back as value_and_grad does
            slow = write_function("_forward_numpy", graph.params, specs, graph.nodes, set(graph.nodes),
                                  graph.result, None, None, f"{fn.__name__}: the loss.",
                                  **module.aux_options(program))[0]
            functions.append(module._floats_as_numpy(slow.rstrip("\n"), program))
        source = render("numpy_module.py.j2", title=f"Forward pass of `{fn.__name__}`.",
                        origin=f"{fn.__module__}.{fn.__qualname__}", notes=[], uses_math=uses_math,
                        functions=functions)
        namespace = load(source, f"<symbackprop forward {fn.__name__}>")
        fast = namespace["forward"]
        if program.scalar:
            slow_fn = namespace["_forward_numpy"]

            def run(*a):
                try:
                    return fast(*a)
                except (ArithmeticError, ValueError):
                    slow = slow_fn(*a)
                    return slow if program.has_aux else float(slow)
        else:
            run = fast
        return Artifact(source, _taking_all_arguments(run, program), run)

    def _build_train_step(self, program):
        source = module.step_module(program)
        namespace = load(source, f"<symbackprop train step {program.fn.__name__}>")
        run = namespace[program.core]
        partner = program.accumulating
        if partner is not None:  # its function is in the same module
            accumulate = namespace[partner.core]
            partner.artifact = Artifact(source, accumulate, accumulate)
        return Artifact(source, run, run)

    def export(self, program, path, forward=None):
        if program.kind == "train_step":
            text = module.step_module(program, forward)
        elif program.entry:
            text = module.export_entry(program)
        else:
            text = module.export_python(program, forward)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path
