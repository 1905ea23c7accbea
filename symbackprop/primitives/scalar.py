"""Scalar functions: the ones SymPy lacks, and the table of every function a kernel body can hold.

The table (FUNCTIONS, after the classes) is the one place a scalar function is named: what users write
after `np.` and `math.`, how the printers and explain write it, what the LLVM backend lowers it
with, whether its NumPy form can warn.

The classes are the bodies of elementwise kernels. Every derivative here is chosen so
that common-subexpression elimination can reuse the forward value
(`sigmoid' = s*(1 - s)`, `expm1' = expm1 + 1`), and so that `where` stays
where-safe: its derivative selects, it never multiplies by a 0/1 mask.

Kink convention: at a tie or a corner the derivative is the mean of the
one-sided derivatives (what a central difference measures): maximum and minimum
split ties evenly, abs'(0) = 0, clip passes half the gradient at its bounds.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Callable

import numpy as np
import sympy
from sympy import S


class RealFunction(sympy.Function):
    is_real = True
    is_extended_real = True


class sigmoid(RealFunction):
    nargs = 1

    def fdiff(self, argindex=1):
        return self * (1 - self)

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return 1 / (1 + sympy.exp(-x))


class softplus(RealFunction):
    """log(1 + exp(u)), written stably as max(u, 0) + log1p(exp(-|u|)); its derivative is sigmoid(u)."""

    nargs = 1

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])


class expm1(RealFunction):
    nargs = 1

    def fdiff(self, argindex=1):
        return self + 1

    @classmethod
    def eval(cls, x):
        if x.is_zero:
            return S.Zero


class log1p(RealFunction):
    nargs = 1

    def fdiff(self, argindex=1):
        return 1 / (1 + self.args[0])

    @classmethod
    def eval(cls, x):
        if x.is_zero:
            return S.Zero


class BoolFunction(RealFunction):
    """A 0/1-valued function: derivative zero, dtype bool."""

    def fdiff(self, argindex=1):
        return S.Zero


def _bool(value):
    return S.One if value else S.Zero


def _swapped(cls, a, b):
    """Symmetric comparisons in one canonical argument order, so CSE sees a == b and b == a as one."""
    if sympy.default_sort_key(b) < sympy.default_sort_key(a):
        return cls(b, a)
    return None


def _comparison(name, test, symmetric=False):
    """A comparison as a BoolFunction, folded on numbers (the table below says how it is written)."""

    def eval(cls, a, b):
        if a == b and symmetric:  # x == x folds to True, as SymPy's own Eq does; x >= x is left alone
            return _bool(test(0, 0))
        if a.is_Number and b.is_Number:
            return _bool(test(a, b))
        return _swapped(cls, a, b) if symmetric else None

    return type(name, (BoolFunction,), {"nargs": 2, "eval": classmethod(eval)})


gt = _comparison("gt", operator.gt)
ge = _comparison("ge", operator.ge)
lt = _comparison("lt", operator.lt)
le = _comparison("le", operator.le)
eq = _comparison("eq", operator.eq, symmetric=True)
ne = _comparison("ne", operator.ne, symmetric=True)


class logical_and(BoolFunction):
    nargs = 2


class logical_or(BoolFunction):
    nargs = 2


class logical_not(BoolFunction):
    nargs = 1


COMPARISONS = {"gt": gt, "ge": ge, "lt": lt, "le": le, "eq": eq, "ne": ne}
BOOL_FUNCTIONS = (gt, ge, lt, le, eq, ne, logical_and, logical_or, logical_not)


class maximum(RealFunction):
    nargs = 2

    def fdiff(self, argindex=1):
        a, b = self.args
        if argindex == 2:
            a, b = b, a
        return gt(a, b) + eq(a, b) / 2

    @classmethod
    def eval(cls, a, b):
        if a == b:
            return a
        if a.is_Number and b.is_Number:
            return sympy.Max(a, b)


class minimum(RealFunction):
    nargs = 2

    def fdiff(self, argindex=1):
        a, b = self.args
        if argindex == 2:
            a, b = b, a
        return lt(a, b) + eq(a, b) / 2

    @classmethod
    def eval(cls, a, b):
        if a == b:
            return a
        if a.is_Number and b.is_Number:
            return sympy.Min(a, b)


class where(RealFunction):
    """np.where(c, a, b); its derivative selects instead of multiplying by a mask."""

    nargs = 3

    @classmethod
    def eval(cls, c, a, b):
        if c.is_Number:
            return a if c != 0 else b
        if a == b:
            return a

    def _eval_derivative(self, s):
        c, a, b = self.args
        return where(c, a.diff(s), b.diff(s))


class sign(RealFunction):
    """np.sign; zero derivative (abs'(0) = sign(0) = 0 follows the kink convention)."""

    nargs = 1

    def fdiff(self, argindex=1):
        return S.Zero

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sympy.sign(x)


class Rounding(RealFunction):
    """A piecewise-constant function: derivative 0 everywhere, the jumps included (their one-sided
    derivatives are 0 too; a central difference across a jump measures the jump, not a slope)."""

    nargs = 1
    numpy_function = None

    def fdiff(self, argindex=1):
        return S.Zero

    @classmethod
    def eval(cls, x):
        if x.is_Number and x.is_finite:
            return sympy.Integer(int(cls.numpy_function(float(x))))


class rint(Rounding):
    """np.rint = np.round(x): to the nearest integer, halves to even."""

    numpy_function = staticmethod(np.rint)


class floor(Rounding):
    numpy_function = staticmethod(np.floor)


class ceil(Rounding):
    numpy_function = staticmethod(np.ceil)


class absolute(RealFunction):
    nargs = 1

    def fdiff(self, argindex=1):
        return sign(self.args[0])

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return abs(x)


# ---- the table of scalar functions ---------------------------------------------
#
# One record per scalar function. The frontend's `np.`/`math.` names, ops.unary, the NumPy and
# `math` printers, explain and the LLVM backend (with its vecmath implementations) all read it, so a
# function of one argument whose SymPy class differentiates itself is added with one row here and,
# for the LLVM backend, its implementation in vecmath.

@dataclass(frozen=True)
class ScalarFunction:
    """A scalar function as every part of the compiler knows it."""

    name: str               # NumPy's name (np.<name> computes it on numbers); body-only ones: their class's name
    build: Callable         # makes its SymPy body from the arguments' symbols and numbers
    arity: int = 1
    classes: tuple = ()     # the SymPy classes of what `build` makes, by which printers and lowerings find
                            # this record; () when it builds arithmetic (x**2, a + b: Pow's and Add's rules)
    numpy_names: tuple = ()  # what users may write after `np.`, aliases included (abs, absolute, fabs)
    math_names: tuple = ()  # what users may write after `math.`, on Python floats
    numpy: str | None = None  # its name in NumPy code ("np.tanh"); None: the printer writes it by a rule
    math: str | None = None   # its name in `math` code ("math.tanh", "abs"); None: a rule, or math has none
    llvm: str | None = None   # the vecmath implementation LLVM calls; None: lowered by a rule (an intrinsic)
    warns: bool = True      # NumPy may warn computing it (overflow, log of 0): the code needs np.errstate
    out: bool = False       # its NumPy call is a ufunc computing exactly the printed form, so it can take out=
    infix: str | None = None  # written between its two arguments: (a > b), (p & q)
    explain: str | None = None  # its name in explain's table; by default the NumPy name without `np.`

    def __post_init__(self):
        if self.explain is None and self.numpy is not None:
            object.__setattr__(self, "explain", self.numpy.removeprefix("np."))


def _ufunc(name, cls, math_name=None, warns=True):
    """A NumPy ufunc of one argument that `math` has too (as math_name) and vecmath implements as `name`."""
    math_name = math_name or name
    return ScalarFunction(name, cls, classes=(cls,), numpy_names=tuple(dict.fromkeys((name, math_name))),
                          math_names=(math_name,), numpy=f"np.{name}", math=f"math.{math_name}", llvm=name,
                          warns=warns, out=True)


def _zero_one(cls, infix=None, numpy_name=None, numpy=None):
    """A comparison or logical function: 0/1 valued, never warns; of two arguments when written infix."""
    return ScalarFunction(cls.__name__, cls, 2 if infix else 1, (cls,), (numpy_name,) if numpy_name else (),
                          numpy=numpy, warns=False, infix=infix)


_FUNCTIONS = (
    _ufunc("exp", sympy.exp),
    _ufunc("log", sympy.log),
    _ufunc("log1p", log1p),
    _ufunc("expm1", expm1),
    _ufunc("sin", sympy.sin),
    _ufunc("cos", sympy.cos),
    _ufunc("tan", sympy.tan),
    # tanh(±inf) is ±1: a tanh network's code needs no np.errstate (about 1 µs a call)
    _ufunc("tanh", sympy.tanh, warns=False),
    _ufunc("sinh", sympy.sinh),
    _ufunc("cosh", sympy.cosh),
    _ufunc("arctan", sympy.atan, "atan"),
    _ufunc("arcsin", sympy.asin, "asin"),
    _ufunc("arccos", sympy.acos, "acos"),
    _ufunc("arcsinh", sympy.asinh, "asinh", warns=False),  # defined and finite or ±inf everywhere
    # rounding: NumPy returns floats; `math` code uses Python's round (halves to even, like np.rint)
    ScalarFunction("rint", rint, classes=(rint,), numpy_names=("rint", "round", "around"), numpy="np.rint",
                   math="round", llvm="rint", warns=False, out=True),
    ScalarFunction("floor", floor, classes=(floor,), numpy_names=("floor",), math_names=("floor",),
                   numpy="np.floor", math="math.floor", llvm="floor", warns=False, out=True),
    ScalarFunction("ceil", ceil, classes=(ceil,), numpy_names=("ceil",), math_names=("ceil",),
                   numpy="np.ceil", math="math.ceil", llvm="ceil", warns=False, out=True),
    # SymPy's sqrt is the power x**(1/2): the printers' rule for powers writes it with these names
    ScalarFunction("sqrt", sympy.sqrt, numpy_names=("sqrt",), math_names=("sqrt",), numpy="np.sqrt",
                   math="math.sqrt", llvm="sqrt"),
    # SymPy's own Abs and sign (it simplifies sqrt(x**2) to Abs(x), whose derivative is sign(x)) are the
    # same functions. LLVM lowers both by rules; math code writes sign as ((x > 0) - (x < 0)).
    ScalarFunction("absolute", absolute, classes=(absolute, sympy.Abs), numpy_names=("abs", "absolute", "fabs"),
                   math_names=("fabs",), numpy="np.abs", math="abs", warns=False, out=True),
    ScalarFunction("sign", sign, classes=(sign, sympy.sign), numpy_names=("sign",), numpy="np.sign", warns=False),
    # NumPy's names for arithmetic: the body is the arithmetic, printed and lowered as such
    ScalarFunction("square", lambda x: x**2, numpy_names=("square",)),
    ScalarFunction("negative", lambda x: -x, numpy_names=("negative",)),
    ScalarFunction("positive", lambda x: x, numpy_names=("positive",)),
    ScalarFunction("reciprocal", lambda x: 1 / x, numpy_names=("reciprocal",)),
    ScalarFunction("add", lambda a, b: a + b, 2, numpy_names=("add",)),
    ScalarFunction("subtract", lambda a, b: a - b, 2, numpy_names=("subtract",)),
    ScalarFunction("multiply", lambda a, b: a * b, 2, numpy_names=("multiply",)),
    ScalarFunction("divide", lambda a, b: a / b, 2, numpy_names=("divide", "true_divide")),
    # math code writes a power with a fractional exponent as math.pow (float ** float may be complex)
    ScalarFunction("power", lambda a, b: a**b, 2, numpy_names=("power",), math_names=("pow",), math="math.pow"),
    ScalarFunction("maximum", maximum, 2, (maximum,), ("maximum",), numpy="np.maximum", math="max", warns=False,
                   out=True),
    ScalarFunction("minimum", minimum, 2, (minimum,), ("minimum",), numpy="np.minimum", math="min", warns=False,
                   out=True),
    # NumPy's NaN-ignoring forms: on numbers np.fmax itself, on arrays traced as maximum (NaN propagates)
    ScalarFunction("fmax", maximum, 2, numpy_names=("fmax",)),
    ScalarFunction("fmin", minimum, 2, numpy_names=("fmin",)),
    # written by the printers' rules: np.where(c, a, b) / (a if c else b). Counted as able to warn, as
    # it always was (np.where itself cannot: a body that is only a where gets a needless np.errstate)
    ScalarFunction("where", where, 3, (where,), ("where",), numpy="np.where"),
    # only ever made by the compiler; written 1/(1 + exp(-x)) and max(u, 0) + log1p(exp(-|u|))
    ScalarFunction("sigmoid", sigmoid, classes=(sigmoid,), llvm="sigmoid"),
    ScalarFunction("softplus", softplus, classes=(softplus,)),
    _zero_one(gt, ">"), _zero_one(ge, ">="), _zero_one(lt, "<"), _zero_one(le, "<="),
    _zero_one(eq, "=="), _zero_one(ne, "!="),
    _zero_one(logical_and, "&", "logical_and"),
    _zero_one(logical_or, "|", "logical_or"),
    # math code writes (not x), explain ~x
    _zero_one(logical_not, numpy_name="logical_not", numpy="np.logical_not"),
)


def _index(pairs, what):
    table = {}
    for key, function in pairs:
        if key in table:
            raise ValueError(f"{what} {key!r} is both {table[key].name} and {function.name}")
        table[key] = function
    return table


#: canonical name -> record
FUNCTIONS = _index(((f.name, f) for f in _FUNCTIONS), "name")
#: np.<name> -> record, and math.<name> -> record
NUMPY_NAMES = _index(((n, f) for f in _FUNCTIONS for n in f.numpy_names), "np. name")
MATH_NAMES = _index(((n, f) for f in _FUNCTIONS for n in f.math_names), "math. name")
#: SymPy class of a body's node -> record
OF_CLASS = _index(((c, f) for f in _FUNCTIONS for c in f.classes), "class")


def recognise(expr):
    """Rewrite `1/(1 + exp(-u))` as sigmoid(u) so its derivative reuses s, and the stable softplus
    `max(u, 0) + log1p(exp(-|u|))` as softplus(u), whose derivative is sigmoid(u) (not a sum of
    the kinks of its two terms)."""
    expr = _recognise_softplus(expr)
    expr = _recognise_half_tanh(expr)

    def is_sigmoid(e):
        if not (e.is_Pow and e.exp == -1 and e.base.is_Add and len(e.base.args) == 2):
            return False
        one, other = sorted(e.base.args, key=lambda t: not t.is_Number)
        return one == 1 and isinstance(other, sympy.exp)

    def to_sigmoid(e):
        other = [t for t in e.base.args if not t.is_Number][0]
        return sigmoid(-other.args[0])

    if not expr.has(sympy.exp):
        return expr
    return expr.replace(is_sigmoid, to_sigmoid)


def _half_tanh(e):
    """(c, k, y) when e is c + k*tanh(y) with k = ±c (c a nonzero number), else None."""
    if not (e.is_Add and len(e.args) == 2):
        return None
    c, term = sorted(e.args, key=lambda t: not t.is_Number)
    if not c.is_Number or c == 0:
        return None
    k, rest = term.as_coeff_Mul()
    if isinstance(rest, sympy.tanh) and (k == c or k == -c):
        return c, k, rest.args[0]
    return None


def _recognise_half_tanh(expr):
    """c*(1 + tanh(y)) is 2c*sigmoid(2y), and c*(1 - tanh(y)) is 2c*sigmoid(-2y): one exp instead of a
    tanh (half its cost in NumPy; tanh-approximated GELU is 0.5*x*(1 + tanh(...))), and the
    derivative s*(1 - s) reads the forward value as tanh's 1 - t**2 would."""
    def to_sigmoid(e):
        c, k, y = _half_tanh(e)
        return 2 * c * sigmoid(2 * y if k == c else -2 * y)

    if not expr.has(sympy.tanh):
        return expr
    return expr.replace(lambda e: _half_tanh(e) is not None, to_sigmoid)


def _recognise_softplus(expr):
    def has_pair(e):
        if not e.is_Add:
            return False
        relus = {t.args[0] for t in e.args if isinstance(t, maximum) and 0 in t.args}
        return any(_softplus_tail(t) in relus for t in e.args)

    def merge(e):
        relus = {t.args[0]: t for t in e.args if isinstance(t, maximum) and 0 in t.args}
        terms = list(e.args)
        for t in e.args:
            u = _softplus_tail(t)
            if u is not None and u in relus and relus[u] in terms and t in terms:
                terms.remove(t)
                terms.remove(relus[u])
                terms.append(softplus(u))
        return sympy.Add(*terms)

    if not expr.has(log1p) or not expr.has(maximum):
        return expr
    return expr.replace(has_pair, merge)


def _softplus_tail(t):
    """u when t is log1p(exp(-|u|)), else None."""
    if isinstance(t, log1p) and isinstance(t.args[0], sympy.exp):
        inner = -t.args[0].args[0]
        if isinstance(inner, absolute):
            return inner.args[0]
    return None
