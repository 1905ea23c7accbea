"""Scalar functions SymPy lacks, with derivatives written in terms of their output.

These are the bodies of elementwise kernels. Every derivative here is chosen so
that common-subexpression elimination can reuse the forward value
(`sigmoid' = s*(1 - s)`, `expm1' = expm1 + 1`), and so that `where` stays
where-safe: its derivative selects, it never multiplies by a 0/1 mask.

Kink convention: at a tie or a corner the derivative is the mean of the
one-sided derivatives (what a central difference measures): maximum and minimum
split ties evenly, abs'(0) = 0, clip passes half the gradient at its bounds.
"""
from __future__ import annotations

import operator

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


def _comparison(name, symbol, test, symmetric=False):
    """A comparison as a BoolFunction: folded on numbers, written `(a > b)` by the printers."""

    def eval(cls, a, b):
        if a == b and symmetric:  # x == x folds to True, as SymPy's own Eq does; x >= x is left alone
            return _bool(test(0, 0))
        if a.is_Number and b.is_Number:
            return _bool(test(a, b))
        return _swapped(cls, a, b) if symmetric else None

    return type(name, (BoolFunction,), {"nargs": 2, "symbol": symbol, "eval": classmethod(eval)})


gt = _comparison("gt", ">", operator.gt)
ge = _comparison("ge", ">=", operator.ge)
lt = _comparison("lt", "<", operator.lt)
le = _comparison("le", "<=", operator.le)
eq = _comparison("eq", "==", operator.eq, symmetric=True)
ne = _comparison("ne", "!=", operator.ne, symmetric=True)


class logical_and(BoolFunction):
    nargs = 2
    symbol = "&"


class logical_or(BoolFunction):
    nargs = 2
    symbol = "|"


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


class absolute(RealFunction):
    nargs = 1

    def fdiff(self, argindex=1):
        return sign(self.args[0])

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return abs(x)


#: numpy / math names -> SymPy constructors of the scalar body
UNARY = {
    "exp": sympy.exp,
    "log": sympy.log,
    "log1p": log1p,
    "expm1": expm1,
    "sqrt": sympy.sqrt,
    "square": lambda x: x**2,
    "abs": absolute,
    "absolute": absolute,
    "fabs": absolute,
    "sin": sympy.sin,
    "cos": sympy.cos,
    "tan": sympy.tan,
    "tanh": sympy.tanh,
    "sinh": sympy.sinh,
    "cosh": sympy.cosh,
    "arctan": sympy.atan,
    "arcsin": sympy.asin,
    "arccos": sympy.acos,
    "atan": sympy.atan,
    "asin": sympy.asin,
    "acos": sympy.acos,
    "sign": sign,
    "negative": lambda x: -x,
    "positive": lambda x: x,
    "reciprocal": lambda x: 1 / x,
}

BINARY = {
    "add": lambda a, b: a + b,
    "subtract": lambda a, b: a - b,
    "multiply": lambda a, b: a * b,
    "divide": lambda a, b: a / b,
    "true_divide": lambda a, b: a / b,
    "power": lambda a, b: a**b,
    "pow": lambda a, b: a**b,
    "maximum": maximum,
    "minimum": minimum,
    "fmax": maximum,
    "fmin": minimum,
}


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
