"""Elementwise kernels: a SymPy body per output, over one symbol per input array.

A kernel node has attrs
    outs     tuple of SymPy expressions, one per output, over symbols a0..an-1
    program  tuple of (temp, expr) assignments the outs may refer to
    names    tuple of (user_name, expr): intermediate values the user named
    shape    the output shape (NumPy broadcasting of the inputs)
Inputs broadcast with NumPy's rules. Kernels are fused (passes/fuse.py) and
their derivative comes from sympy.diff; there is no hand-written adjoint here.
"""
from __future__ import annotations

import functools

import numpy as np
import sympy

from ..ir import append
from . import scalar
from .registry import Primitive, primitive

_ARGS: list[sympy.Symbol] = []


def arg(i: int) -> sympy.Symbol:
    """The canonical symbol of a kernel's i-th input."""
    while len(_ARGS) <= i:
        _ARGS.append(sympy.Symbol(f"a{len(_ARGS)}", real=True))
    return _ARGS[i]


def temps(prefix="t"):
    return sympy.numbered_symbols(prefix, real=True)


def number(x) -> sympy.Expr:
    """A Python number as an exact SymPy number (integral floats become integers)."""
    if isinstance(x, (bool, np.bool_)):
        return sympy.Integer(int(x))
    if isinstance(x, (int, np.integer)):
        return sympy.Integer(int(x))
    x = float(x)
    if not np.isfinite(x):
        return sympy.oo if x > 0 else -sympy.oo if x < 0 else sympy.nan
    if x.is_integer() and abs(x) < 2**53:
        return sympy.Integer(int(x))
    if x != 0 and np.isfinite(1 / x) and (1 / x).is_integer() and 1 / float(int(1 / x)) == x:
        return sympy.Rational(1, int(1 / x))  # prints as x/128, exactly the float it was
    return sympy.Float(x, 17)


def is_bool_expr(expr) -> bool:
    return isinstance(expr, scalar.BOOL_FUNCTIONS)


def expand(program, outs):
    """Substitute the program's temps into the outs (a DAG: SymPy shares subtrees)."""
    program, outs = tuple(program), tuple(outs)
    if not program:
        return outs
    return _expand(program, outs)


# A kernel's body is expanded again at every step that reads it (inference, fusion, differentiation,
# printing), and each xreplace rebuilds the expressions the temps occur in: once per body is enough.
@functools.lru_cache(maxsize=8192)
def _expand(program, outs):
    env = _program_values(program)
    return tuple(o.xreplace(env) for o in outs)


@functools.lru_cache(maxsize=4096)
def _program_values(program):
    env = {}
    for t, e in program:
        env[t] = e.xreplace(env)
    return env


_INTEGRAL_FUNCS = (scalar.maximum, scalar.minimum, scalar.where, scalar.absolute, scalar.sign)


def operand_dtypes(values):
    """Input dtypes for kernel_dtype: None for a weak Python float, which adapts to the arrays it meets."""
    return [None if v.weak else v.dtype for v in values]


def _valued_symbols(expr) -> set:
    """The inputs whose values reach `expr`'s result, not only through a comparison (a bool)."""
    if is_bool_expr(expr):
        return set()
    if expr.is_Symbol:
        return {expr} if expr.name.startswith("a") else set()
    return set().union(*(_valued_symbols(a) for a in expr.args))


def kernel_dtype(expr, dtypes) -> np.dtype:
    """The dtype NumPy gives `expr` evaluated on inputs of `dtypes` (None: a weak Python float)."""
    if is_bool_expr(expr):
        return np.dtype(bool)
    used = [dtypes[int(s.name[1:])] for s in expr.free_symbols if s.name.startswith("a")]
    if not used:  # a body its inputs cancelled from (x - x is 0) has NumPy's dtype of x - x
        used = list(dtypes)
    if used and all(d is None for d in used):
        return np.dtype(np.float64)
    numeric = [d for d in used if d is not None and d.kind != "b"]
    dtype = np.result_type(*numeric) if numeric else np.dtype(np.int64)
    if dtype.kind in "iub" and any(dtypes[int(s.name[1:])] is None for s in _valued_symbols(expr)):
        return np.dtype(np.float64)  # a Python float's value among integers and booleans: float64, as NumPy's
    if dtype.kind in "iub":
        exact = all(
            a.is_Symbol or a.is_Integer or isinstance(a, (sympy.Add, sympy.Mul) + _INTEGRAL_FUNCS + scalar.BOOL_FUNCTIONS)
            or (a.is_Pow and a.exp.is_Integer and a.exp >= 0)
            for a in sympy.preorder_traversal(expr)
        )
        if not exact:
            dtype = np.dtype(np.float64)
    return dtype


@primitive("kernel")
class Kernel(Primitive):

    def infer(self, node):
        if node.attrs.get("dtype") is not None:  # gradients are float whatever their body's dtype
            return [(node.attrs["shape"], node.attrs["dtype"])] * len(node.attrs["outs"])
        dtypes = operand_dtypes(node.inputs)
        return [(node.attrs["shape"], kernel_dtype(e, dtypes)) for e in expand(node.attrs["program"], node.attrs["outs"])]

    def adjoint(self, node, gs, wants):
        return kernel_adjoint.kernel_adjoint(node, gs, wants)

    def tangent(self, node, ts, batch):
        return kernel_adjoint.kernel_tangent(node, ts, batch)

    def batch(self, node, ins, batched, n):
        return kernel_adjoint.kernel_batch(node, ins, batched, n)

    def describe(self, node):
        outs = expand(node.attrs["program"], node.attrs["outs"])
        return ", ".join(sympy.sstr(o) for o in outs)

    def flops(self, node):
        # the body's operations (a transcendental counted as one) at every element
        exprs = [e for _, e in node.attrs["program"]] + list(node.attrs["outs"])
        ops_per_element = sum(sympy.count_ops(e) for e in exprs)
        return max(ops_per_element, 1) * max(v.size for v in node.outputs)


@primitive("fill")
class Fill(Primitive):
    """A constant array: every element is `value`. Folded into kernels that read it."""

    def infer(self, node):
        return [(node.attrs["shape"], node.attrs["dtype"])]

    def adjoint(self, node, gs, wants):
        return []

    def describe(self, node):
        return f"fill {node.attrs['value']}"


@primitive("constant")
class Constant(Primitive):
    """A constant array with different elements (np.arange, np.eye, a triangle's mask): its values known at
    specialisation, kept in `values` (row-major) with the NumPy call that makes them, which the NumPy backend
    prints (`text`, so the generated code reads np.eye(3), and computes the same bits as the frontend did)."""

    def infer(self, node):
        return [(node.attrs["shape"], node.attrs["dtype"])]

    def adjoint(self, node, gs, wants):
        return []

    def describe(self, node):
        return node.attrs["text"]


def constant(array, text):
    """The Value of a NumPy array computed at specialisation by the call `text` (NumPy source)."""
    array = np.asarray(array)
    if array.size and np.all(array == array.flat[0]):
        return fill(float(array.flat[0]), array.shape, array.dtype, made=True)
    values = tuple(float(v) for v in array.ravel())
    return append(Constant, [], {"values": values, "shape": array.shape, "dtype": array.dtype, "text": text})


def fill(value, shape, dtype=np.float64, made=False):
    """A constant array; `made` marks one the model asked for by its dtype (np.zeros(n)), whose dtype
    widens what it meets as an array's does, where an internal constant (a 0 of an adjoint) takes the
    dtype of its context."""
    attrs = {"value": float(value), "shape": tuple(shape), "dtype": np.dtype(dtype)}
    if made:
        attrs["made"] = True
    return append(Fill, [], attrs)


def fill_value(v):
    """The constant a Value holds everywhere, or None."""
    node = v.node
    if node is not None and node.prim is Fill:
        return node.attrs["value"]
    return None


def _coefficient_of_single_symbol(expr):
    coeff, rest = expr.as_coeff_Mul()
    return rest if rest.is_Symbol and coeff.is_Number else None


def kernel(values, outs, shape, program=(), names=(), dtype=None):
    """Build a kernel over `values` computing `outs`; returns one Value per out.

    Constant inputs are folded in, duplicate inputs merged, symbols renumbered;
    an out that is just an input (of the right shape) returns that input.
    """
    values = list(values)
    # a body that folds to a number (x - x, or zeros > 0) still has the dtype NumPy gives it
    input_floats = [v.dtype for v in values if v.dtype.kind == "f" and not v.weak]
    boolean = [is_bool_expr(o) for o in expand(program, outs)]
    # an array the model made (np.zeros(n): float64, as NumPy's) is folded in as a number, but still widens
    # the float32 arrays it meets
    made = [v.dtype for v in values if fill_value(v) is not None and v.node.attrs.get("made")]
    if dtype is None and made and not any(boolean):
        others = [v.dtype for v in values if fill_value(v) is None and v.dtype.kind == "f" and not v.weak]
        widest = np.result_type(*made, *others)
        if not others or np.result_type(*others) != widest:
            dtype = widest
    # folding a constant input in drops its dtype from the body: keep what NumPy gives the unfolded body
    folded_floats = any(fill_value(v) is not None and v.dtype.kind == "f" and not v.weak for v in values)
    natural = [kernel_dtype(o, operand_dtypes(values)) for o in expand(program, outs)] if folded_floats else None
    subs, new_values, new_syms = {}, [], {}
    for i, v in enumerate(values):
        c = fill_value(v)
        if c is not None:
            subs[arg(i)] = number(c)
        elif v in new_syms:
            subs[arg(i)] = new_syms[v]
        else:
            new_syms[v] = arg(len(new_values))
            subs[arg(i)] = new_syms[v]
            new_values.append(v)
    program = tuple((t, e.xreplace(subs)) for t, e in program)
    outs = tuple(o.xreplace(subs) for o in outs)
    names = tuple((n, e.xreplace(subs)) for n, e in names)
    used = set().union(*(e.free_symbols for e in expand(program, outs)))
    keep = [i for i in range(len(new_values)) if arg(i) in used]
    if len(keep) != len(new_values):
        renumber = {arg(i): arg(j) for j, i in enumerate(keep)}
        program = tuple((t, e.xreplace(renumber)) for t, e in program)
        outs = tuple(o.xreplace(renumber) for o in outs)
        names = tuple((n, e.xreplace(renumber)) for n, e in names)
        new_values = [new_values[i] for i in keep]
    shape = tuple(shape)
    results: list = [None] * len(outs)
    pending = []
    for k, o in enumerate(expand(program, outs)):
        if o.is_Symbol and o.name.startswith("a"):
            v = new_values[int(o.name[1:])]
            if v.shape == shape and (dtype is None or v.dtype == dtype):
                results[k] = v
                continue
        if o.is_Number:
            own = np.dtype(bool) if boolean[k] else np.result_type(*input_floats) if input_floats \
                else np.dtype(np.float64)
            results[k] = fill(float(o), shape, dtype or (natural[k] if natural else own))
            continue
        pending.append(k)
    if pending:
        outs_p = tuple(outs[k] for k in pending)
        if dtype is None and natural:
            wanted = {natural[k] for k in pending}
            folded = {kernel_dtype(o, operand_dtypes(new_values)) for o in expand(program, outs_p)}
            if len(wanted) == 1 and wanted != folded and next(iter(wanted)).kind == "f":
                dtype = next(iter(wanted))
        attrs = {"outs": outs_p, "program": program, "names": names, "shape": shape}
        if dtype is not None:
            attrs["dtype"] = np.dtype(dtype)
        made = append(Kernel, new_values, attrs)
        made = made if isinstance(made, tuple) else (made,)
        if new_values and all(v.weak for v in new_values):
            for v in made:
                v.weak = True
        for k, v in zip(pending, made):
            results[k] = v
            single = _coefficient_of_single_symbol(outs[k])
            if single is not None and single.name.startswith("a"):
                src = new_values[int(single.name[1:])]
                if src.shape == shape:
                    v.zero_sum_axes = src.zero_sum_axes
    return results


# the adjoint of a kernel is SymPy's derivative of its body (a stage of its own: kernel_adjoint.py); it
# builds kernels with the functions above, so it is imported once they exist
from . import kernel_adjoint  # noqa: E402
