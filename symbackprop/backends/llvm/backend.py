"""JIT-compiled callables and exported artifacts for one specialisation."""
from __future__ import annotations

import ctypes
import os
import subprocess
import tempfile

import numpy as np

from ...dtypes import is_float
from ...errors import CompileError
from ...ir import bodies
from ...program import aux_names, aux_rebuild
from ...rendering import render
from ..base import Artifact, Backend, load
from . import blas, jit, lapack
from . import call as bridge
from .adapter import adapter_ir
from . import regions  # noqa: F401 - registers the lowering of `if` and `while` on values
from .lower import Lowering


def symbol_name(compiled):
    return f"{compiled.fn.__name__}_{compiled.entry or 'value_and_grad'}"


def _what(compiled):
    """What the function computes, for its comments: the entry point's, or value and gradient."""
    return f"{compiled.entry} of `{compiled.fn.__name__}`" if compiled.entry else \
        f"value and gradient of `{compiled.fn.__name__}`"


def lower(compiled, with_blas):
    text = Lowering(compiled, symbol_name(compiled), with_blas and blas.find_cblas() is not None).run()
    return header_comment(compiled) + text


def header_comment(compiled):
    """What each parameter and output is, and the operations with their source lines."""
    lines = [f"; symbackprop: {_what(compiled)}",
             f"; int {symbol_name(compiled)}(" + ", ".join(
                 [s.describe() for s in compiled.specs if s.dynamic] + ["value"]
                 + [f"d_{compiled.specs[i].name}" for i, _ in zip(compiled.wrt, compiled.grads)]
                 + (aux_names(compiled) if compiled.has_aux else [])) + ")"]
    lines += _operation_lines(compiled.graph.nodes, "")
    return "\n".join(lines) + "\n"


def _operation_lines(nodes, indent):
    """One comment line per operation with its source line; a region's bodies indented under it."""
    lines = []
    for node in nodes:
        where = node.loc.short() if node.loc and node.loc.line else ""
        outs = ", ".join(v.name or "_" for v in node.outputs)
        lines.append(f";   {where:24s} {indent}{outs} = {node.prim.describe(node)}"[:160])
        for body in bodies(node):
            lines += _operation_lines(body.nodes, indent + "  ")
    return lines


def attach(compiled) -> Artifact:
    """The JIT-compiled value_and_grad (or forward: a Program with no gradients) of a Program."""
    ir_text = lower(compiled, with_blas=True)
    symbols = {**blas.cblas_symbols(), **lapack.lapack_symbols()}
    try:
        module = jit.compile_module(ir_text, symbols)
    except (ValueError, RuntimeError) as error:
        raise CompileError(f"LLVM could not compile the generated code: {error}") from None
    address = module.address(symbol_name(compiled))
    call, run_dynamic = make_fast_caller(compiled, address, module) or make_caller(compiled, address)
    return Artifact(ir_text, call, run_dynamic, keep=module)


def make_fast_caller(compiled, address, jit_module):
    """The METH_FASTCALL route (call.py): float parameters by value, scalar gradients in one buffer.

    An adapter function turns that calling convention into the C entry point's. None when a
    parameter's dtype is one the bridge does not read (the ctypes caller then serves).
    """
    specs = compiled.specs
    dynamic = [i for i, s in enumerate(specs) if s.dynamic]
    grad_specs = [specs[i] for i in compiled.wrt]
    aux = compiled.graph.aux
    readable = ("float64", "float32", "int64", "int32")
    if bridge.LAYOUT is None or any(specs[i].kind == "array" and specs[i].dtype.name not in readable
                                    for i in dynamic) or any(v.dtype.name not in readable for v in aux):
        return None
    # float gradients and float 0-d aux arrays come back through one float64 buffer
    scalar_out = [g.shape == () for g in compiled.grads] + [v.shape == () and is_float(v.dtype) for v in aux]
    text, name = adapter_ir(compiled, symbol_name(compiled), scalar_out)
    adapter = jit.compile_module(text, {symbol_name(compiled): address})
    params = [bridge.Scalar("float64") if specs[i].kind == "float" else
              bridge.Array(specs[i].dtype.name, specs[i].shape) for i in dynamic]
    array_outs = [(g.shape, g.dtype) for g, s in zip(list(compiled.grads) + aux, scalar_out) if not s]
    params += [bridge.Array(np.dtype(d).name, shape, writable=True) for shape, d in array_outs]
    n_scalar = sum(scalar_out)
    if n_scalar:
        params.append(bridge.Array("float64", (n_scalar,), writable=True))
    fast = bridge.make_caller(adapter, name, params, "float64")
    run_dynamic = _call_wrapper(compiled, fast, scalar_out, grad_specs)
    run_dynamic.keep = (adapter, jit_module)
    if len(dynamic) == len(specs):
        return run_dynamic, run_dynamic
    return (lambda *args: run_dynamic(*[args[i] for i in dynamic])), run_dynamic


def _call_wrapper(compiled, fast, scalar_out, grad_specs):
    """Generated Python (templates/llvm_call.py.j2) that allocates outputs and calls the bridge."""
    params = [f"p{i}" for i, s in enumerate(s for s in compiled.specs if s.dynamic)]
    arrays, scalars, grads = [], [], []
    for k, (g, is_scalar, spec) in enumerate(zip(compiled.grads, scalar_out, grad_specs)):
        name = f"g{k}"
        if is_scalar:
            scalars.append(name)
            text = name if spec.kind == "float" or spec.dtype == np.float64 else f"_{spec.dtype}({name})"
        else:
            arrays.append((name, g.shape, g.dtype.name))
            text = name if g.dtype == spec.dtype else f"{name}.astype(_{spec.dtype})"
        grads.append(text)
    grads_text = grads[0] if compiled.single and grads else "(" + ", ".join(grads) + ("," if len(grads) == 1 else "") + ")"
    dtype = compiled.graph.result.dtype
    value = "value" if dtype == np.float64 else f"_{dtype}(value)"
    if compiled.has_aux:
        leaves = []
        for k, (v, is_scalar) in enumerate(zip(compiled.graph.aux, scalar_out[len(compiled.grads):])):
            name = f"a{k}"
            if is_scalar:
                scalars.append(name)
                leaves.append(name if v.dtype == np.float64 else f"_{v.dtype}({name})")
            else:
                arrays.append((name, v.shape, v.dtype.name))
                leaves.append(name if v.shape else _scalar_of(v, name))
        value = f"({value}, {compiled.aux_text(leaves)})"
    text = render("llvm_call.py.j2", params=params, arrays=arrays, scalars=scalars, value=value,
                  grads=grads_text if compiled.grads else None)
    namespace = load(text, f"<symbackprop llvm call of {compiled.fn.__name__}>")
    namespace.update(_fast=fast, _empty=np.empty, _float64=np.float64, _float32=np.float32)
    return namespace["run"]


def _scalar_of(v, name):
    """A Python number from the 0-d array `name` holding the non-float aux value `v`."""
    return f"{'bool' if v.dtype.kind == 'b' else 'int'}({name})"


def _finish_aux(v, out):
    if v.shape:
        return out
    if is_float(v.dtype):
        return float(out) if v.dtype == np.float64 else v.dtype.type(out)
    return bool(out) if v.dtype.kind == "b" else int(out)


def make_caller(compiled, address):
    specs = compiled.specs
    dynamic = [i for i, s in enumerate(specs) if s.dynamic]
    grads = compiled.grads
    grad_specs = [specs[i] for i in compiled.wrt]
    aux = list(compiled.graph.aux)
    n = len(dynamic) + 1 + len(grads) + len(aux)
    cfunc = ctypes.CFUNCTYPE(ctypes.c_int, *[ctypes.c_void_p] * n)(address)
    in_dtypes = [specs[i].dtype for i in dynamic]
    value_dtype = compiled.graph.result.dtype
    out_shapes = [(g.shape, g.dtype) for g in grads]
    single = compiled.single

    def finish(g, spec):
        if spec.kind == "float" or (spec.shape == () and spec.dtype == np.float64):
            return float(g)
        if spec.shape == ():
            return spec.dtype.type(g)
        return g if g.dtype == spec.dtype else g.astype(spec.dtype)

    def run_dynamic(*args):
        inputs = [np.ascontiguousarray(a, dtype=d) for a, d in zip(args, in_dtypes)]
        value = np.empty((), value_dtype)
        outs = [np.empty(shape, dtype) for shape, dtype in out_shapes]
        aux_outs = [np.empty(a.shape, a.dtype) for a in aux]
        cfunc(*[a.ctypes.data for a in inputs], value.ctypes.data, *[o.ctypes.data for o in outs + aux_outs])
        result = [finish(o, s) for o, s in zip(outs, grad_specs)]
        v = float(value) if value_dtype == np.float64 else value_dtype.type(value)
        if compiled.has_aux:
            v = (v, aux_rebuild(compiled.aux_tree, [_finish_aux(a, o) for a, o in zip(aux, aux_outs)]))
        if not grads:  # a forward alone
            return v
        return v, (result[0] if single else tuple(result))

    if len(dynamic) == len(specs):
        return run_dynamic, run_dynamic
    return (lambda *args: run_dynamic(*[args[i] for i in dynamic])), run_dynamic


def c_header(compiled):
    entries = [(s.name, s.dtype, s.shape, True, "") for s in compiled.specs if s.kind != "static"]
    entries.append(("value", compiled.graph.result.dtype, (), False, "the loss"))
    for i, g in zip(compiled.wrt, compiled.grads):
        s = compiled.specs[i]
        entries.append((f"d_{s.name}", g.dtype, s.shape, False, f"gradient of {s.name}"))
    entries += _aux_entries(compiled)
    return _header(symbol_name(compiled), _what(compiled), entries,
                   [s.describe() for s in compiled.specs if s.kind == "static"])


def _aux_entries(compiled):
    """The header's entries of the aux arrays (has_aux=True): named by their path in the tree."""
    if not compiled.has_aux:
        return []
    what = f"output of {compiled.entry}" if compiled.entry else "aux, not differentiated"
    first_aux = compiled.entry_outputs if compiled.entry and compiled.model_aux else len(compiled.graph.aux)
    return [(name, v.dtype, v.shape, False, what if k < first_aux else "the model's aux, not differentiated")
            for k, (name, v) in enumerate(zip(aux_names(compiled), compiled.graph.aux))]


def _link(ir_text, path):
    """Compile IR for a portable CPU and link it into a shared library needing only libc and libm."""
    obj = jit.emit_object(ir_text)
    with tempfile.TemporaryDirectory() as tmp:
        objfile = os.path.join(tmp, "model.o")
        with open(objfile, "wb") as f:
            f.write(obj)
        cc = os.environ.get("CC", "cc")
        try:
            subprocess.run([cc, "-shared", "-o", path, objfile, "-lm"], check=True, capture_output=True, text=True)
        except FileNotFoundError:
            raise CompileError(f"export to .so needs a C compiler ({cc}) to link the object; install gcc or set CC") \
                from None
        except subprocess.CalledProcessError as error:
            raise CompileError(f"linking {path} failed: {error.stderr.strip()}") from None


_CTYPES = {"float64": "double", "float32": "float"}


def _header(name, what, entries, statics):
    """A C header declaring `int name(...)`; entries are (name, dtype, shape, const, note)."""
    lines = [f"/* symbackprop: {what}; returns 0 on success. */"]
    if statics:
        # a static string may hold `*/`: it must not end the comment and put its text in the header as C
        lines.append(f"/* specialised for {', '.join(statics).replace('*/', '* /')} */")
    lines += [f"#ifndef {name.upper()}_H", f"#define {name.upper()}_H", "", "#ifdef __cplusplus", 'extern "C" {',
              "#endif", "", f"int {name}("]
    params = []
    for pname, dtype, shape, const, note in entries:
        ctype = _CTYPES.get(np.dtype(dtype).name)
        if ctype is None:
            raise CompileError(f"export: `{pname}` has dtype {dtype}; the C interface takes float32 or float64 arrays")
        dims = "scalar" if shape == () else "[" + "][".join(map(str, shape)) + "], C order"
        params.append(f"    {'const ' if const else ''}{ctype}* {pname},  /* {note + ': ' if note else ''}{dims} */")
    params[-1] = params[-1].replace(",  /*", "  /*")
    lines += params + [");", "", "#ifdef __cplusplus", "}", "#endif", "", f"#endif /* {name.upper()}_H */", ""]
    return "\n".join(lines)


def export(compiled, path):
    """Write `.ll` IR text, or a `.so` needing only libc/libm with its `.h` beside it."""
    text = lower(compiled, with_blas=False)
    if path.endswith(".ll"):
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path
    _link(text, path)
    header = os.path.splitext(path)[0] + ".h"
    with open(header, "w", encoding="utf-8") as f:
        f.write(c_header(compiled))
    return path


# ---- train steps ----------------------------------------------------------------------------

def step_symbol(compiled):
    what = "accumulate" if compiled.phase == "accumulate" else "train_step"
    return f"{compiled.fn.__name__}_{what}"


def step_programs(compiled):
    """The train step's Programs: the updating one, and with accumulation the accumulating one."""
    return [compiled] + ([compiled.accumulating] if compiled.accumulating is not None else [])


def lower_step(compiled, with_blas):
    """A train step as one C function: every input by pointer (targets updated in place), the loss last;
    with accumulation a second function in the same module, <model>_accumulate, for the other calls."""
    comments, module, text = [], None, ""
    for program in step_programs(compiled):
        program.grads = []
        lowering = Lowering(program, step_symbol(program), with_blas and blas.find_cblas() is not None,
                            updates=program.updates, update_nodes=program.update_nodes, module=module)
        text = lowering.run()
        module = lowering.module
        what = "gradient accumulation" if program.phase == "accumulate" else "train step"
        comments.append(header_comment(program).replace("value and gradient", what)
                        .replace(symbol_name(program), step_symbol(program)))
    return "".join(comments) + text


def _step_caller(program, address):
    """A callable taking the program's inputs (the NumPy step function's arguments), returning the loss."""
    params = program.graph.params
    targets = {id(t) for t, _ in program.updates}
    written = [id(p) in targets for p in params]
    aux = list(program.graph.aux)
    cfunc = ctypes.CFUNCTYPE(ctypes.c_int, *[ctypes.c_void_p] * (len(params) + 1 + len(aux)))(address)
    dtypes = [p.dtype for p in params]
    loss_dtype = program.graph.result.dtype

    def call(*args):
        arrays, back = [], []
        for a, dtype, w in zip(args, dtypes, written):
            x = np.ascontiguousarray(a, dtype=dtype)
            if w and x is not a:  # a strided parameter: update a contiguous copy, then write it back
                back.append((a, x))
            arrays.append(x)
        loss = np.empty((), loss_dtype)
        aux_outs = [np.empty(a.shape, a.dtype) for a in aux]
        cfunc(*[x.ctypes.data for x in arrays], loss.ctypes.data, *[o.ctypes.data for o in aux_outs])
        for a, x in back:
            a[...] = x
        loss = float(loss) if loss_dtype == np.float64 else loss_dtype.type(loss)
        if program.has_aux:
            return loss, aux_rebuild(program.aux_tree, [_finish_aux(a, o) for a, o in zip(aux, aux_outs)])
        return loss

    return call


def attach_train_step(compiled):
    """JIT-compile a train step (and its accumulating partner, in the same module); each `call` takes the
    NumPy step function's arguments and returns the loss."""
    ir_text = lower_step(compiled, with_blas=True)
    try:
        module = jit.compile_module(ir_text, {**blas.cblas_symbols(), **lapack.lapack_symbols()})
    except (ValueError, RuntimeError) as error:
        raise CompileError(f"LLVM could not compile the generated train step: {error}") from None
    artifacts = []
    for program in step_programs(compiled):
        call = _step_caller(program, module.address(step_symbol(program)))
        call.keep = module
        artifacts.append(Artifact(ir_text, call, call, keep=module))
    if compiled.accumulating is not None:
        compiled.accumulating.artifact = artifacts[1]
    return artifacts[0]


def export_step(compiled, path):
    """A train step as `.ll` text, or a `.so` with its `.h`: int <model>_train_step(...) (and
    int <model>_accumulate(...) for the other calls when it accumulates gradients)."""
    text = lower_step(compiled, with_blas=False)
    if path.endswith(".ll"):
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path
    _link(text, path)
    statics = [s.describe() for s in compiled.specs if s.kind == "static"]
    what = f"one {compiled.optimizer_text.split('(')[0]} step on `{compiled.fn.__name__}`"
    headers = [_header(step_symbol(compiled), what, _step_entries(compiled), statics)]
    partner = compiled.accumulating
    if partner is not None:
        headers.append(_header(step_symbol(partner), f"adds the gradients of `{compiled.fn.__name__}` to their "
                               f"sums; call it {partner.accumulate - 1} times, then {step_symbol(compiled)}",
                               _step_entries(partner), statics))
    with open(os.path.splitext(path)[0] + ".h", "w", encoding="utf-8") as f:
        f.write("\n".join(headers))
    return path


def _step_entries(program):
    """The header's (name, dtype, shape, const, note) of each pointer of a train step function."""
    targets = {id(t) for t, _ in program.updates}
    roles = {}
    for name, param in program.state:
        kind = "sum of the gradients" if name.startswith("acc_") else "optimizer state"
        roles[name] = f"{kind} for {param}, updated in place"
    if program.step_name:
        roles[program.step_name] = "the step count, updated in place"
    for name, attr in program.hyper:
        roles[name] = f"hyperparameter {attr}"
    entries = []
    for p in program.graph.params:
        note = roles.get(p.name) or ("updated in place" if id(p) in targets else "")
        entries.append((p.name, p.dtype, p.shape, id(p) not in targets, note))
    entries.append(("loss", program.graph.result.dtype, (), False, "the loss before the update"))
    return entries + _aux_entries(program)


# ---- the backend ---------------------------------------------------------------------------

class LLVMBackend(Backend):
    name = "llvm"
    fuses_across_statements = True
    exports = (".ll", ".so")
    language = "llvm"

    def check(self, specs):
        for s in specs:
            if s.kind == "array" and s.dtype.kind == "f" and s.dtype.name not in ("float16", "float32", "float64"):
                raise TypeError(f"argument `{s.name}` has dtype {s.dtype}; the LLVM backend takes float16, "
                                "bfloat16, float32 and float64 arrays (use backend='numpy', or convert it)")

    def build(self, program) -> Artifact:
        if program.kind == "train_step":
            return attach_train_step(program)
        return attach(program)

    def export(self, program, path, forward=None):
        if program.kind == "train_step":
            return export_step(program, path)
        return export(program, path)
