"""The fast-call adapter: Python floats by value, scalar gradients packed in one float64 buffer.

    double <model>_fast(double w | T* W, ..., T* d_W (array gradients, then aux arrays)..., double* scalars)

calls the C entry point `int <model>_value_and_grad(const T* ..., T* value, T* grads..., T* aux...)`
and returns the loss as a double.
"""
from __future__ import annotations

from llvmlite import ir

from .lower import PTR, llvm_type

I32, I64 = ir.IntType(32), ir.IntType(64)
DOUBLE = ir.DoubleType()


def adapter_ir(compiled, entry, scalar_out):
    """(IR text, function name) of the adapter calling `entry`; `scalar_out` says, for each gradient and
    then each aux array, whether it is a float packed into the scalars' buffer."""
    module = ir.Module(name=f"{entry}_fast")
    n_in = sum(1 for s in compiled.specs if s.dynamic)
    outputs = list(compiled.grads) + list(compiled.graph.aux)  # the C entry point's outputs after the value
    target = ir.Function(module, ir.FunctionType(I32, [PTR] * (n_in + 1 + len(outputs))), entry)
    dynamic = [s for s in compiled.specs if s.dynamic]
    args = [DOUBLE if s.kind == "float" else PTR for s in dynamic]
    args += [PTR for s in scalar_out if not s]
    if any(scalar_out):
        args.append(PTR)
    name = f"{entry}_fast"
    fn = ir.Function(module, ir.FunctionType(DOUBLE, args), name)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    call_args = []
    for s, a in zip(dynamic, fn.args):
        if s.kind == "float":
            slot = b.alloca(DOUBLE)
            b.store(a, slot)
            call_args.append(slot)
        else:
            call_args.append(a)
    value_type = llvm_type(compiled.graph.result.dtype)
    value = b.alloca(value_type)
    call_args.append(value)
    rest = iter(fn.args[len(dynamic):])
    scalar_slots = []
    array_args = [next(rest) for s in scalar_out if not s]
    buffer = next(rest) if any(scalar_out) else None
    arrays = iter(array_args)
    for g, is_scalar in zip(outputs, scalar_out):
        if is_scalar:
            slot = b.alloca(llvm_type(g.dtype))
            scalar_slots.append(slot)
            call_args.append(slot)
        else:
            call_args.append(next(arrays))
    b.call(target, call_args)
    for k, slot in enumerate(scalar_slots):
        v = b.load(slot, typ=slot.allocated_type)
        if v.type != DOUBLE:
            v = b.fpext(v, DOUBLE)
        b.store(v, b.gep(buffer, [ir.Constant(I64, k)], source_etype=DOUBLE))
    result = b.load(value, typ=value_type)
    b.ret(result if value_type == DOUBLE else b.fpext(result, DOUBLE))
    return str(module), name
