"""A kernel's SymPy body as LLVM instructions, element by element.

Numbers are computed in the kernel's float type; comparisons give i1, which
`where` selects on and arithmetic reads as 0.0/1.0. Transcendentals come from
vecmath (inline polynomials that vectorise), never from libm calls.
"""
from __future__ import annotations

import sympy
from llvmlite import ir

from ...errors import CompileError
from ...primitives import scalar
from . import vecmath

I1 = ir.IntType(1)

# the table's functions vecmath implements, by the SymPy class of a body's node
_VECMATH = {cls: vecmath.UNARY[f.llvm] for f in scalar.FUNCTIONS.values() if f.llvm for cls in f.classes}
_FCMP = {cls: scalar.OF_CLASS[cls].infix for cls in scalar.COMPARISONS.values()}


def intrinsic(builder, name, ty, args):
    suffix = "f64" if isinstance(ty, ir.DoubleType) else "f32"
    full = f"llvm.{name}.{suffix}"
    module = builder.module
    fn = module.globals.get(full) or ir.Function(module, ir.FunctionType(ty, [ty] * len(args)), full)
    return builder.call(fn, args)


class ExprLowering:
    """Evaluates SymPy expressions over a kernel's inputs at one element."""

    def __init__(self, builder, ftype, inputs, where="kernel"):
        self.b = builder
        self.ftype = ftype
        self.memo = dict(inputs)   # Symbol -> ir.Value (float ftype or i1)
        self.where = where

    def number(self, x):
        return ir.Constant(self.ftype, float(x))

    def as_float(self, v):
        if v.type == I1:
            return self.b.uitofp(v, self.ftype)
        if isinstance(v.type, ir.IntType):
            return self.b.sitofp(v, self.ftype)
        if v.type != self.ftype:
            return self.b.fpext(v, self.ftype) if isinstance(self.ftype, ir.DoubleType) else self.b.fptrunc(v, self.ftype)
        return v

    def as_bool(self, v):
        if v.type == I1:
            return v
        if isinstance(v.type, ir.IntType):
            return self.b.icmp_unsigned("!=", v, ir.Constant(v.type, 0))
        return self.b.fcmp_unordered("!=", v, ir.Constant(v.type, 0.0))

    def float(self, e):
        return self.as_float(self.value(e))

    def bool(self, e):
        return self.as_bool(self.value(e))

    def value(self, e):
        hit = self.memo.get(e)
        if hit is not None:
            return hit
        v = self._lower(e)
        self.memo[e] = v
        return v

    def _lower(self, e):
        b = self.b
        if e.is_Number:
            if e is sympy.nan:
                return self.number(float("nan"))
            return self.number(float(e))
        if e.is_NumberSymbol:  # pi, E, EulerGamma, ...
            return self.number(float(e))
        if e is sympy.zoo or e is sympy.I:  # left by folding (1/0, log(0), sqrt(-1)): no real value, as in NumPy
            return self.number(float("nan"))
        if e.is_Add:
            terms = [self.float(a) for a in e.args]
            acc = terms[0]
            for t in terms[1:]:
                acc = b.fadd(acc, t)
            return acc
        if e.is_Mul:
            coeff, rest = e.as_coeff_Mul()
            factors = [self.float(a) for a in sympy.Mul.make_args(rest)]
            acc = factors[0]
            for f in factors[1:]:
                acc = b.fmul(acc, f)
            if coeff == -1:
                return b.fneg(acc)
            if coeff != 1:
                return b.fmul(self.number(coeff), acc)
            return acc
        if e.is_Pow:
            base, exponent = e.args
            x = self.float(base)
            if exponent == -1:
                return b.fdiv(self.number(1.0), x)
            if exponent.is_Number:
                return vecmath.pow(b, x, float(exponent))
            return vecmath.pow(b, x, self.float(exponent))
        fn = type(e)
        if fn in _VECMATH:
            return _VECMATH[fn](b, self.float(e.args[0]))
        if fn is scalar.softplus:  # max(u, 0) + log1p(exp(-|u|)): no overflow for any u
            u = self.float(e.args[0])
            tail = vecmath.log1p(b, vecmath.exp(b, b.fneg(intrinsic(b, "fabs", self.ftype, [u]))))
            return b.fadd(intrinsic(b, "maximum", self.ftype, [u, self.number(0)]), tail)
        if fn in scalar.FUNCTIONS["absolute"].classes:
            return intrinsic(b, "fabs", self.ftype, [self.float(e.args[0])])
        if fn in scalar.FUNCTIONS["sign"].classes:
            x = self.float(e.args[0])
            pos = b.uitofp(b.fcmp_ordered(">", x, self.number(0)), self.ftype)
            neg = b.uitofp(b.fcmp_ordered("<", x, self.number(0)), self.ftype)
            nan = b.fcmp_unordered("uno", x, x)
            return b.select(nan, x, b.fsub(pos, neg))
        if fn in (scalar.maximum, scalar.minimum):
            return intrinsic(b, "maximum" if fn is scalar.maximum else "minimum", self.ftype,
                             [self.float(a) for a in e.args])
        if fn is scalar.where:
            c = self.bool(e.args[0])
            return b.select(c, self.float(e.args[1]), self.float(e.args[2]))
        if fn in _FCMP:
            x, y = self.float(e.args[0]), self.float(e.args[1])
            op = _FCMP[fn]
            return b.fcmp_unordered(op, x, y) if op == "!=" else b.fcmp_ordered(op, x, y)
        if fn is scalar.logical_and:
            return b.and_(self.bool(e.args[0]), self.bool(e.args[1]))
        if fn is scalar.logical_or:
            return b.or_(self.bool(e.args[0]), self.bool(e.args[1]))
        if fn is scalar.logical_not:
            return b.xor(self.bool(e.args[0]), ir.Constant(I1, 1))
        raise CompileError(f"the LLVM backend cannot lower `{sympy.sstr(e)}` ({fn.__name__}) in a {self.where}")
