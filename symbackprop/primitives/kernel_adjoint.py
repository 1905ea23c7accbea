"""The adjoint of an elementwise kernel, derived by SymPy.

For outputs y_k = B_k(a) and incoming gradients g_k, the gradient of input i is
sum_k g_k * dB_k/da_i, unbroadcast to the input's shape. Each derivative is
rewritten in terms of the forward outputs (B_k -> y_k, so tanh' is 1 - y**2),
then forward bodies and derivatives go through one sympy.cse: what they share
is computed once on the forward pass and kept as a residual for the backward
pass, the way hand-written backprop stores activations. Derivations are cached
by body structure, so the same layer repeated costs SymPy work once.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import sympy
from sympy.core.function import ArgumentIndexError
from sympy.core.parameters import distribute
from sympy.ntheory.multinomial import multinomial_coefficients_iterator

from ..dtypes import is_float
from . import ops
from .elementwise import arg, expand, is_bool_expr, kernel, kernel_dtype, operand_dtypes, temps
from . import scalar
from .scalar import recognise
from ..ir import Value, append


@dataclass(frozen=True)
class Derivation:
    forward_program: tuple
    forward_outs: tuple        # the original outputs, then one per residual
    residuals: tuple           # temps of the forward program the backward reads
    backward_program: tuple
    backward_outs: tuple       # distinct derivative expressions
    which: tuple               # per input: index into backward_outs, or None


def out_symbol(k):
    return sympy.Symbol(f"y{k}", real=True)


def grad_symbol(k):
    return sympy.Symbol(f"g{k}", real=True)


def _needed(program, exprs):
    """The temps of `program` that `exprs` reach, transitively."""
    defs = dict(program)
    need, stack = set(), [s for e in exprs for s in e.free_symbols]
    while stack:
        s = stack.pop()
        if s in defs and s not in need:
            need.add(s)
            stack.extend(defs[s].free_symbols)
    return need


_FUNCTION_RULE = sympy.Function._eval_derivative
_DEFAULT_N_TIMES = sympy.Basic._eval_derivative_n_times
_UNBOUNDED = frozenset((sympy.S.Infinity, sympy.S.NegativeInfinity, sympy.S.ComplexInfinity, sympy.S.NaN))


class _Differentiator:
    """sympy.diff by SymPy's own rules, each subexpression once per variable.

    sympy.diff wraps every subexpression's derivative in a Derivative(...) evaluation that
    re-checks its variables, asks whether the result is zero (an assumptions query over the
    new expression) and walks it for leftover Derivatives; over a kernel body that bookkeeping
    cost most of the derivation. This applies the same rules as Add, Mul and Function (so it
    builds the same expressions, in the same order) with the bookkeeping left out, and shares
    the derivative of a subexpression the body reaches twice; Pow's rule is SymPy's but for the
    limits at a zero base (diff_pow). Any other class is handed to sympy.diff.

    Those rules build products with a zero factor: Leibniz's rule a term per factor, the factors
    that do not depend on the variable included. SymPy makes such a product 0 unless a factor is
    infinite (then nan), which it learns by asking every other factor whether it is finite: for
    tanh(u) that expands u into real and imaginary parts. Without oo, zoo or nan anywhere in the
    expression no factor can be infinite (SymPy folds 1/0, log(0) and the like to those atoms),
    so the product is 0 and is not built; with them, it is built as SymPy builds it.
    """

    def __init__(self):
        self.free: dict = {}
        self.unbounded_memo: dict = {}

    def unbounded(self, e):
        """Whether `e` contains an infinite or undefined number (oo, -oo, zoo, nan)."""
        found = self.unbounded_memo.get(e)
        if found is None:
            if e.is_Atom:
                found = e in _UNBOUNDED
            else:
                found = any(self.unbounded(a) for a in e.args)
            self.unbounded_memo[e] = found
        return found

    def free_symbols(self, e):
        found = self.free.get(e)
        if found is None:
            if e.is_Symbol:
                found = frozenset((e,))
            elif isinstance(e, (sympy.Add, sympy.Mul, sympy.Pow, sympy.Function)):
                found = frozenset().union(*(self.free_symbols(a) for a in e.args))
            else:
                found = frozenset(e.free_symbols)
            self.free[e] = found
        return found

    def diff(self, e, s, memo):
        d = memo.get(e)
        if d is not None:
            return d
        if s not in self.free_symbols(e):
            d = sympy.S.Zero
        elif e == s:
            d = sympy.S.One
        else:
            cls = type(e)
            if cls is sympy.Add:
                d = sympy.Add(*[self.diff(a, s, memo) for a in e.args])
            elif cls is sympy.Mul:
                # Mul's n-th derivative rule (general Leibniz) at n = 1, in its order of terms
                args = e.args
                derivs = [self.diff(a, s, memo) for a in args]
                zero_terms = not self.unbounded(e)
                terms = []
                for ks, c in multinomial_coefficients_iterator(len(args), 1):
                    if zero_terms and derivs[ks.index(1)] is sympy.S.Zero:
                        continue  # c*0, which Add would drop
                    terms.append(c * sympy.Mul(*[d if k else a for k, a, d in zip(ks, args, derivs)]))
                d = sympy.Add(*terms)
            elif cls is sympy.Pow:
                d = self.diff_pow(e, s, memo)
            elif isinstance(e, scalar.where) and cls._eval_derivative is scalar.where._eval_derivative:
                c, a, b = e.args
                d = scalar.where(c, self.diff(a, s, memo), self.diff(b, s, memo))
            elif (isinstance(e, sympy.Function) and cls._eval_derivative is _FUNCTION_RULE
                  and cls._eval_derivative_n_times is _DEFAULT_N_TIMES):
                terms = []
                for i, a in enumerate(e.args, 1):
                    da = self.diff(a, s, memo)
                    if da.is_zero:
                        continue
                    try:
                        df = e.fdiff(i)
                    except ArgumentIndexError:
                        df = sympy.Function.fdiff(e, i)
                    terms.append(df * da)
                d = sympy.Add(*terms)
            else:
                d = sympy.diff(e, s)
        memo[e] = d
        return d

    def diff_pow(self, e, s, memo):
        """d(base**exp): Pow's rule e*(dexp*log(base) + dbase*exp/base), with the limits at a zero base.

        SymPy's rule is 0*log(0) = nan at base == 0 when the exponent is differentiated, and
        0/0 = nan when the base is, with an exponent SymPy cannot fold into base**(exp - 1).
        The math has limits there, which these where-guarded forms select (they never multiply
        by a mask, so the untaken nan does not leak):
          d/dexp:  where(e == 0, 0, e*log(base))     base**exp is 0 only at base 0 with exp > 0
                                                     (or underflow), where the limit is 0
          d/dbase: where(exp == 0, 0, exp*base**(exp - 1))   for an exponent that is not a number;
                                                     a number's is SymPy's, folded to c*base**(c - 1)
        so d/dy 0**y is 0 for y > 0 and -inf at y == 0 (both one-sided limits), d/dx x**y at
        x == 0 is 0 for y > 1, 1 at y == 1, inf for 0 < y < 1 and 0 at y == 0 (x**0 is 1).
        A number base keeps log(base) as a number: log(0) is -inf (not SymPy's zoo), and the log
        of a negative number is nan, as np.log gives (not a complex log).
        """
        base, exp = e.args
        dbase, dexp = self.diff(base, s, memo), self.diff(exp, s, memo)
        zero = sympy.Float(0)  # a float in Python-float (math) code too
        terms = []
        if dexp is not sympy.S.Zero:
            if base.is_Number:
                if base.is_zero:
                    by_exp = scalar.where(scalar.eq(e, 0), zero, -sympy.oo * e)
                elif base.is_negative:
                    by_exp = sympy.nan
                else:
                    by_exp = e * sympy.log(base)
            else:
                by_exp = scalar.where(scalar.eq(e, 0), zero, e * sympy.log(base))
            terms.append(dexp * by_exp)
        if dbase is not sympy.S.Zero:
            if exp.is_Number:
                by_base = e * exp / base
            else:
                by_base = scalar.where(scalar.eq(exp, 0), zero, exp * base ** (exp - 1))
            terms.append(dbase * by_base)
        return sympy.Add(*terms)


def local_derivative(body, a):
    """d body / d a by the rules the adjoints use (explain prints this one, so that it agrees with the code)."""
    return _Differentiator().diff(body, a, {})


@functools.lru_cache(maxsize=4096)
def derive(outs, program, wants, has_g) -> Derivation:
    # SymPy would distribute 2*(a - b) into 2*a - 2*b and hide the shared (a - b) from CSE. Some of
    # its functions' eval (tanh(-x) -> -tanh(x)) can loop on undistributed arguments: then derive as usual.
    try:
        with distribute(False):
            return _derive(outs, program, wants, has_g)
    except RecursionError:
        return _derive(outs, program, wants, has_g)


def _derive(outs, program, wants, has_g) -> Derivation:
    bodies = [recognise(b) for b in expand(program, outs)]
    to_output = {b: out_symbol(k) for k, b in enumerate(bodies) if not b.is_Symbol}
    derivs, which = [], []
    differentiator = _Differentiator()
    for i, want in enumerate(wants):
        if not want:
            which.append(None)
            continue
        a, memo = arg(i), {}
        d = sum((grad_symbol(k) * differentiator.diff(b, a, memo).xreplace(to_output)
                 for k, b in enumerate(bodies) if has_g[k]), sympy.S.Zero)
        if d not in derivs:
            derivs.append(d)
        which.append(derivs.index(d))
    repl, reduced = sympy.cse(bodies + derivs, symbols=temps(), optimizations=None, order="none")
    n = len(bodies)
    forward_needed = _needed(repl, reduced[:n])
    forward_program = tuple((t, e) for t, e in repl if t in forward_needed)
    backward_program = tuple((t, e) for t, e in repl if t not in forward_needed)
    backward_reads = set().union(set(), *(e.free_symbols for e in reduced[n:]),
                                 *(e.free_symbols for _, e in backward_program))
    residuals = tuple(t for t, _ in forward_program if t in backward_reads)
    return Derivation(forward_program, tuple(reduced[:n]) + residuals, residuals,
                      backward_program, tuple(reduced[n:]), tuple(which))


def kernel_adjoint(node, gs, wants):
    n_out = len(node.outputs)
    has_g = tuple(g is not None for g in gs)
    d = derive(node.attrs["outs"], node.attrs["program"], tuple(wants), has_g)
    # the forward kernel now computes the shared subexpressions and keeps the residuals
    node.attrs["program"] = d.forward_program
    node.attrs["outs"] = d.forward_outs
    residual_values = {}
    dtypes = operand_dtypes(node.inputs)
    extra = []
    for t, body in zip(d.residuals, expand(d.forward_program, d.residuals)):
        if t in d.forward_outs[:n_out]:  # the residual is an output already
            residual_values[t] = node.outputs[d.forward_outs.index(t)]
            continue
        v = Value(node.attrs["shape"], kernel_dtype(body, dtypes), node)
        node.outputs.append(v)
        residual_values[t] = v
        extra.append(t)
    node.attrs["outs"] = d.forward_outs[:n_out] + tuple(extra)
    # the backward kernel reads gradients, inputs, outputs and residuals
    env = {}
    for i, v in enumerate(node.inputs):
        env[arg(i)] = v
    for k in range(n_out):
        env[out_symbol(k)] = node.outputs[k]
        if gs[k] is not None:
            env[grad_symbol(k)] = gs[k]
    env.update(residual_values)
    reads = set().union(set(), *(e.free_symbols for e in d.backward_outs),
                        *(e.free_symbols for _, e in d.backward_program))
    bound = [s for s in sorted(reads, key=lambda s: s.name) if s in env]
    rename = {s: arg(j) for j, s in enumerate(bound)}
    program = tuple((t, e.xreplace(rename)) for t, e in d.backward_program)
    outs = tuple(e.xreplace(rename) for e in d.backward_outs)
    floats = [v.dtype for v in list(node.inputs) + [g for g in gs if g is not None]
              if v.dtype.kind == "f" and not v.weak]
    dtype = np.result_type(*floats) if floats else np.dtype(np.float64)
    grads = kernel([env[s] for s in bound], outs, node.attrs["shape"], program, dtype=dtype) if outs else []
    result = []
    for i, idx in enumerate(d.which):
        if idx is None:
            result.append(None)
        else:
            result.append(ops.sum_to(grads[idx], node.inputs[i].shape))
    return result


# ---- forward mode: the tangent of a kernel --------------------------------------------------

def tangent_symbol(i):
    return sympy.Symbol(f"u{i}", real=True)


@functools.lru_cache(maxsize=4096)
def derive_tangent(outs, program, has_t) -> tuple:
    """Per output, sum_i dB_k/da_i * u_i over the inputs with a tangent, in terms of the outputs
    (B_k -> y_k, so tanh gives (1 - y0**2)*u0); None for an output whose tangent is zero."""
    try:
        with distribute(False):
            return _derive_tangent(outs, program, has_t)
    except RecursionError:
        return _derive_tangent(outs, program, has_t)


_EPS = sympy.Symbol("eps", real=True)


def _derive_tangent(outs, program, has_t) -> tuple:
    # the directional derivative d/deps B(a + eps*u) at eps = 0: the tangents stay inside np.where's
    # branches (where(c, A, B)' = where(c, A', B')), so an untaken branch's nan or inf does not leak
    bodies = [recognise(b) for b in expand(program, outs)]
    moved = {arg(i): arg(i) + _EPS * tangent_symbol(i) for i, h in enumerate(has_t) if h}
    # in terms of the outputs (tanh' = 1 - h**2), matched before eps = 0 lets SymPy fold sqrt(a)/a
    to_output = {b.xreplace(moved): out_symbol(k) for k, b in enumerate(bodies) if not b.is_Symbol}
    differentiator, memo = _Differentiator(), {}
    result = []
    for b in bodies:
        if is_bool_expr(b):
            result.append(None)
            continue
        d = differentiator.diff(b.xreplace(moved), _EPS, memo).xreplace(to_output)
        d = d.xreplace({_EPS: sympy.S.Zero})
        result.append(None if d.is_zero else d)
    return tuple(result)


def kernel_tangent(node, ts, batch):
    """The tangent of each output of an elementwise kernel: one kernel reading the inputs, the outputs
    and the input tangents (each lifted so that it broadcasts behind the batch axes)."""
    shape = node.attrs["shape"]
    has_t = tuple(t is not None for t in ts)
    derivs = derive_tangent(node.attrs["outs"], node.attrs["program"], has_t)
    env = {}
    for i, v in enumerate(node.inputs):
        env[arg(i)] = v
        if ts[i] is not None:
            env[tangent_symbol(i)] = ops.lift(ts[i], batch, len(shape))
    for k, v in enumerate(node.outputs):
        env[out_symbol(k)] = v
    wanted = [k for k, d in enumerate(derivs)
              if d is not None and is_float(node.outputs[k].dtype) and not is_bool_expr(d)]
    if not wanted:
        return [None] * len(node.outputs)
    reads = set().union(*(derivs[k].free_symbols for k in wanted))
    bound = [s for s in sorted(reads, key=lambda s: s.name) if s in env]
    rename = {s: arg(j) for j, s in enumerate(bound)}
    result = [None] * len(node.outputs)
    groups: dict = {}  # one kernel per dtype (the outputs' own): its outputs share subexpressions
    for k in wanted:
        groups.setdefault(node.outputs[k].dtype, []).append(k)
    for dtype, ks in groups.items():
        made = kernel([env[s] for s in bound], tuple(derivs[k].xreplace(rename) for k in ks),
                      tuple(batch) + tuple(shape), dtype=dtype)
        for k, t in zip(ks, made):
            result[k] = t
    return result


def kernel_batch(node, ins, batched, n):
    """The same body over a batch: a batched input gets 1s behind its batch axis up to the kernel's rank,
    so that it broadcasts as it did; an unbatched one broadcasts along the batch axis for free."""
    shape = node.attrs["shape"]
    ins = [ops.lift(v, (n,), len(shape)) if b else v for v, b in zip(ins, batched)]
    return ops.as_list(append(node.prim, ins, {**node.attrs, "shape": (n,) + shape}))
