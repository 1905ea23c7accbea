"""Random valid programs of the model language, and the checks every one of them must pass.

`generate(chooser)` writes a module (helpers and a `model`) as source text, with
the arguments to call it on: random DAGs of elementwise functions, reductions,
matrix products, broadcasting, shape operations, indexing, concatenation,
`for` loops over stacked weights, static loops whose index picks elements and
moves slices (a convolution as a loop), one operand shared by several products
combined elementwise, static `if`s and helper calls, value-dependent `if`s
(comparisons of 0-d values and reductions, np.any/np.all, and/or/not), `while`
loops with a counter guard and `break` (in a `while` and in a static `for`),
whose thresholds are chosen on the program's arguments with a margin (Site,
calibrate), called with arguments in every memory layout (LAYOUTS). Shapes are
tracked while generating, so every program is valid; rough value intervals
are tracked too, so that `log`, `sqrt` and division only see values away from
their singularities (outside `np.where` guards) and nothing overflows.

`check(program)` runs one program on both backends and asserts what the
language promises (tests/test_fuzz.py states it). The choices come from a
`Chooser`: hypothesis draws in the tests (so failures shrink), a seeded
`random.Random` for the long run from the command line (tests/fuzz.py):

    python -m tests.fuzz --examples 5000 --seed 1 --backend both --out /tmp/fuzz
"""
from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import math
import os
import random
import re
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import symbackprop as sb  # noqa: E402
import gradcheck  # noqa: E402

MAX_SIZE = 96          # elements in any value
MAX_DIM = 5            # length of a new axis
LIMIT = 12.0           # values whose bound grows past this are squashed with tanh


# ---- where the choices come from ----------------------------------------------------

class Chooser:
    """Random choices from a seeded generator (the long run)."""

    def __init__(self, seed):
        self.random = random.Random(seed)

    def int(self, lo, hi):
        return self.random.randint(lo, hi)

    def choice(self, items):
        return items[self.int(0, len(items) - 1)]

    def coin(self, percent):
        return self.int(0, 99) < percent

    def weighted(self, table):
        """One key of {key: weight}; the first keys are the simplest (hypothesis shrinks towards them)."""
        total = sum(table.values())
        r = self.int(0, total - 1)
        for key, w in table.items():
            if r < w:
                return key
            r -= w
        raise AssertionError("unreachable")


class DataChooser(Chooser):
    """Choices drawn from hypothesis's `st.data()`, so that a failing program shrinks."""

    def __init__(self, data):
        from hypothesis import strategies as st
        self.data, self.st = data, st

    def int(self, lo, hi):
        return self.data.draw(self.st.integers(lo, hi))


# ---- what a program is -----------------------------------------------------------------

@dataclass
class Param:
    name: str
    kind: str                  # "array" | "float" | "static" | "onehot" | "mask" | "intmask" | "index"
    shape: tuple = ()
    low: float = -1.0
    high: float = 1.0
    value: object = None       # the value of a static argument
    zero_d: bool = False       # a 0-d array (not a Python float) for a scalar

    @property
    def differentiable(self):
        return self.kind in ("array", "float")


@dataclass
class Program:
    source: str
    params: list
    wrt: object                # what is passed as `wrt=`
    wrt_indices: tuple
    dtype: str
    seed: int
    with_value: bool = True
    features: set = field(default_factory=set)
    every_wrt: bool = False    # also checked w.r.t. each differentiable argument alone
    layouts: dict = field(default_factory=dict)   # parameter index -> memory layout of its argument (LAYOUTS)
    too_close: bool = False    # a value-dependent condition comes within MARGIN of its threshold

    def in_layouts(self, args):
        """The arguments as views in the program's layouts (the values of a broadcast one change: see
        `layout`); check() compares them with contiguous copies of themselves."""
        rng = np.random.default_rng(self.seed + 1)
        return [layout(a, self.layouts[i], rng) if i in self.layouts else a for i, a in enumerate(args)]

    def arguments(self, dtype=None):
        """The arguments, drawn from the program's seed (float arrays in `dtype`)."""
        dtype = np.dtype(dtype or self.dtype)
        rng = np.random.default_rng(self.seed)
        args = []
        for p in self.params:
            if p.kind == "static":
                args.append(p.value)
            elif p.kind == "float":
                args.append(float(rng.uniform(p.low, p.high)))
            elif p.kind == "array":
                a = rng.uniform(p.low, p.high, size=p.shape)
                args.append(np.array(a, dtype=dtype) if p.shape or p.zero_d else np.asarray(a, dtype))
            elif p.kind == "onehot":
                args.append(np.eye(p.shape[-1], dtype=dtype)[rng.integers(0, p.shape[-1], p.shape[:-1])])
            elif p.kind == "mask":
                args.append(rng.uniform(size=p.shape) > 0.5)
            elif p.kind == "intmask":
                args.append((rng.uniform(size=p.shape) > 0.5).astype(np.int64))
            elif p.kind == "index":  # integer indices into an axis of length p.value, negative ones too
                args.append(rng.integers(-p.value, p.value, size=p.shape).astype(np.int64))
            else:  # pragma: no cover
                raise AssertionError(p.kind)
        return args

    def describe(self):
        return f"# dtype={self.dtype} seed={self.seed} wrt={self.wrt!r} value={self.with_value}\n{self.source}"


#: memory layouts of array arguments: the compiled functions give the numbers they give a contiguous copy
LAYOUTS = {"C": 4, "F": 2, "reversed": 2, "strided": 2, "readonly": 1, "broadcast": 2, "view": 1}


def layout(a, kind, rng):
    """`a` (an ndarray) as a view in layout `kind`: Fortran order, negative or non-unit steps into a larger
    buffer, read-only, a zero-stride np.broadcast_to view (repeating its first entry along one axis), or
    a view into a larger array (a 0-d one for a 0-d array)."""
    if not isinstance(a, np.ndarray) or kind == "C":
        return a
    if kind == "F":
        return np.array(a, order="F")  # (np.asfortranarray makes a 0-d array 1-d)
    if kind == "readonly":
        a = a.copy()
        a.setflags(write=False)
        return a
    if kind == "broadcast":
        axes = [i for i, n in enumerate(a.shape) if n > 1]
        if not axes:
            return np.broadcast_to(a, a.shape)
        axis = axes[rng.integers(len(axes))]
        return np.broadcast_to(a.take([0], axis=axis), a.shape)
    if kind == "view":
        big = np.zeros((3,) + a.shape, dtype=a.dtype)
        big[1] = a
        return big[1, ...]  # a view even when `a` is 0-d (big[1] would be a scalar)
    steps = [int(rng.choice([-1, -2, 2, -3])) if kind == "reversed" else int(rng.choice([2, 3]))
             for _ in a.shape]
    big = np.zeros(tuple(n * abs(s) for n, s in zip(a.shape, steps)), dtype=a.dtype)
    view = big[tuple(slice(None, None, s) for s in steps) + (...,)]  # `...`: a 0-d view, not a scalar
    view[...] = a
    return view


@dataclass
class Var:
    name: str
    shape: tuple
    lo: float
    hi: float
    pyfloat: bool = False      # a Python float in plain NumPy (math.* results): no array methods

    @property
    def bound(self):
        return max(abs(self.lo), abs(self.hi))

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))


def _broadcast(*shapes):
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        return None


def _fmt(x):
    return repr(float(x))


# ---- value-dependent conditions, kept away from their thresholds ------------------------------

@dataclass
class Site:
    """One value-dependent condition of a program, written `_c(k, q)` while the program is generated.

    `form` "cmp" is `q > t` or `q < t` (`op`) of a 0-d q; "any" is np.any(q > t), "all" np.all(q < t).
    The threshold t is chosen afterwards (calibrate), from the values q takes on the program's arguments:
    an `if` (role "if") gets the truth value `side` where it is first reached, `frac` of |q| away; a loop's
    stopping condition (role "while": the loop runs while it holds; "break": the loop stops when it does)
    stops the loop at one of the iterations where it can (`pick`), or never (the counter guard stops it).
    """

    k: int
    form: str
    op: str
    role: str
    side: bool = True
    pick: int = 0
    frac: float = 0.2

    def text(self, q, t):
        if self.form == "any":
            return f"np.any({q} > {t!r})"
        if self.form == "all":
            return f"np.all({q} < {t!r})"
        return f"{q} {self.op} {t!r}"

    def holds(self, q, t) -> bool:
        q = np.asarray(q)
        if self.form == "any":
            return bool(np.any(q > t))
        if self.form == "all":
            return bool(np.all(q < t))
        return bool(q > t) if self.op == ">" else bool(q < t)

    def unset(self) -> bool:
        """Its value before it has a threshold: an `if`'s side; a loop keeps running."""
        return self.side if self.role == "if" else self.role == "while"

    def threshold(self, seen) -> float:
        """The threshold for the values `seen` (in order; each an array for any/all)."""
        if not seen:
            return 0.0  # never reached
        if self.role == "if":
            q = np.sort(np.asarray(seen[0], dtype=np.float64).ravel())
            delta = self.frac * max(abs(float(q[-1])), 0.2)
            if self.form == "cmp":
                above = (self.op == ">") == self.side  # whether t lies below q
                return _short(q[-1] - delta if above else q[-1] + delta)
            # any(q > t) is true, and all(q < t) false, when t lies below the largest element
            below_max = self.side if self.form == "any" else not self.side
            if not below_max:
                return _short(q[-1] + delta)
            if q.size > 1 and q[-1] - q[-2] > 1e-3 * max(1.0, abs(q[-1])):
                return _short((q[-1] + q[-2]) / 2)
            return _short(q[0] - delta)  # below every element
        # a loop's condition: it stops at the first iteration j where `stops` holds
        qs = [float(np.asarray(v)) for v in seen]
        rising = (self.role == "break") == (self.op == ">")  # stops once q rises above t, or falls below
        sign = 1.0 if rising else -1.0
        delta = self.frac * max(abs(qs[0]), 0.2)
        options = [qs[0] - sign * delta]  # stops at once
        record = qs[0]
        for q in qs[1:]:
            if sign * q > sign * record:  # a new maximum (rising) or minimum: the loop can stop here
                options.append((q + record) / 2)
                record = q
        options.append(record + sign * delta)  # never: the guard (or the for's range) stops it
        # mostly after some iterations (the backward pass then runs through several): at once for pick 0 only
        return _short(options[0] if self.pick == 0 else options[1 + (self.pick - 1) % (len(options) - 1)])

    def distance(self, q, t) -> float:
        return float(np.min(np.abs(np.asarray(q, dtype=np.float64) - t)))


def _short(t) -> float:
    return float(f"{float(t):.6g}")


_CALL = re.compile(r"_c\((\d+), ")


def written(text, sites, thresholds) -> str:
    """`text` with each `_c(k, q)` written as its condition on threshold thresholds[k]."""
    out, at = [], 0
    for m in _CALL.finditer(text):
        if m.start() < at:
            continue
        depth, i = 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        out.append(text[at:m.start()])
        k = int(m.group(1))
        out.append(sites[k].text(text[m.end():i - 1], thresholds[k]))
        at = i
    return "".join(out) + text[at:]


#: a condition's value keeps this far (times max(1, |threshold|)) from its threshold at every evaluation
MARGIN = 1e-3


def _run_sites(text, sites, thresholds, args):
    """The values each site's q takes when the model runs in plain NumPy (unset thresholds: Site.unset)."""
    seen = {s.k: [] for s in sites}

    def _c(k, q):
        seen[k].append(np.array(q, dtype=np.float64, copy=True))
        t = thresholds.get(k)
        return sites[k].unset() if t is None else sites[k].holds(q, t)

    namespace = {"_c": _c}
    exec(compile(text, "<fuzz calibration>", "exec"), namespace)
    with np.errstate(all="ignore"):
        namespace["model"](*args)
    return seen


def calibrate(text, sites, args):
    """Thresholds for the sites, one at a time in source order (each fixed on the values it sees once the
    earlier ones are fixed), then whether every evaluation keeps MARGIN from its threshold: (thresholds, ok)."""
    thresholds: dict = {}
    for s in sites:
        seen = _run_sites(text, sites, thresholds, args)
        thresholds[s.k] = s.threshold(seen[s.k])
    seen = _run_sites(text, sites, thresholds, args) if sites else {}
    ok = all(s.distance(q, thresholds[s.k]) >= MARGIN * max(1.0, abs(thresholds[s.k]))
             for s in sites for q in seen[s.k])
    return thresholds, ok


# ---- the generator ------------------------------------------------------------------------

class Block:
    """Statements being written at one indentation, with the variables they can read."""

    def __init__(self, scope, indent, params_allowed, depth=0):
        self.scope = list(scope)
        self.lines = []
        self.indent = indent
        self.params_allowed = params_allowed
        self.depth = depth        # helper nesting

    def write(self, text):
        self.lines.append(" " * self.indent + text)


class Generator:
    def __init__(self, chooser, dtype="float64"):
        self.ch = chooser
        self.dtype = dtype
        self.params: list[Param] = []
        self.helpers: list[dict] = []      # {"name", "lines", "params": [Var], "outs": [Var]}
        self.names = itertools.count(1)
        self.loops = 0
        self.tap_loops = 0
        self.every_wrt = False             # differentiate w.r.t. each argument in turn as well
        self.features: set = set()
        self.sites: list[Site] = []        # the value-dependent conditions written (see Site, calibrate)
        self.regions = 0                   # how deep in value-dependent regions the statements are
        self.region_focus = False          # value-dependent `if`, `while` and `break` much more often

    # -- names and parameters --
    def fresh(self, prefix="v"):
        return f"{prefix}{next(self.names)}"

    def new_param(self, prefix, shape, low=-1.0, high=1.0, kind="array"):
        p = Param(self.fresh(prefix), kind, tuple(shape), low, high)
        self.params.append(p)
        return p

    def param_var(self, blk, prefix, shape, low=-1.0, high=1.0):
        p = self.new_param(prefix, shape, low, high)
        v = Var(p.name, p.shape, low, high)
        blk.scope.append(v)
        return v

    def dim(self):
        return self.ch.weighted({3: 4, 2: 3, 4: 3, 1: 2, 5: 1})

    def shape(self, ndim=None):
        ndim = self.ch.weighted({2: 4, 1: 3, 3: 1, 0: 1}) if ndim is None else ndim
        shape = tuple(self.dim() for _ in range(ndim))
        while int(np.prod(shape)) > MAX_SIZE:
            shape = shape[1:]
        return shape

    def scalar_param(self):
        """A Python float, or a 0-d array (always in float32 programs: see test_numerics.py on weak floats)."""
        zero_d = self.dtype == "float32" or self.ch.coin(30)
        p = Param(self.fresh("s"), "array" if zero_d else "float", (), -1.0, 1.0, zero_d=zero_d)
        self.params.append(p)
        return p

    # -- picking what to work on --
    def pick(self, blk, want=None):
        """A variable of the block (recent ones more often), optionally one satisfying `want`."""
        vs = [v for v in blk.scope if want is None or want(v)]
        if not vs:
            return None
        if len(vs) > 2 and self.ch.coin(60):
            vs = vs[-3:]
        return self.ch.choice(vs)

    def assign(self, blk, expr, shape, lo, hi, name=None, pyfloat=False):
        """`name = expr`, squashing a value that may grow too large; returns the new Var."""
        lo, hi = float(lo), float(hi)
        if not (np.isfinite(lo) and np.isfinite(hi)) or max(abs(lo), abs(hi)) > LIMIT:
            bound = max(abs(lo), abs(hi)) if np.isfinite(lo) and np.isfinite(hi) else 1e6
            expr = f"np.tanh(({expr}) * {_fmt(2.0 / bound)})"
            lo, hi, pyfloat = -1.0, 1.0, False
        name = name or self.fresh()
        blk.write(f"{name} = {expr}")
        v = Var(name, tuple(shape), lo, hi, pyfloat)
        blk.scope = [s for s in blk.scope if s.name != name] + [v]
        return v

    # -- statements --
    def statement(self, blk):
        table = {"unary": 6, "binary": 7, "reduce": 4, "matmul": 4, "shape": 3, "index": 3, "concat": 2,
                 "helper": 2, "static_if": 1, "augassign": 1, "unpack": 1, "softmax": 1, "data": 1,
                 "scalar": 1, "loop": 2, "taps": 2, "shared": 2, "gather": 3, "alloc": 2, "lists": 2}
        if blk.depth > 0:  # inside a helper: no new parameters, no loops over stacked weights
            for k in ("loop", "softmax", "data", "scalar", "static_if", "taps", "shared", "gather"):
                table.pop(k)
        if blk.depth > 1:
            table.pop("helper")
        table.update(self.region_weights(blk, table))
        for _ in range(8):
            kind = self.ch.weighted(table)
            if getattr(self, "op_" + kind)(blk) is not False:
                self.features.add(kind)
                return
        self.op_unary(blk)

    def block(self, blk, count):
        for _ in range(count):
            self.statement(blk)

    # elementwise, one argument
    UNARY = [
        # template, applies to (lo, hi), result interval
        ("np.tanh({0})", lambda lo, hi: True, lambda lo, hi: (math.tanh(lo), math.tanh(hi))),
        ("np.sin({0})", lambda lo, hi: True, lambda lo, hi: (-1, 1)),
        ("np.cos({0})", lambda lo, hi: True, lambda lo, hi: (-1, 1)),
        ("np.exp({0})", lambda lo, hi: hi <= 3, lambda lo, hi: (math.exp(lo), math.exp(hi))),
        ("np.exp(-{0} ** 2)", lambda lo, hi: True, lambda lo, hi: (0, 1)),
        ("np.log({0})", lambda lo, hi: lo >= 0.1, lambda lo, hi: (math.log(lo), math.log(hi))),
        ("np.log(1.0 + {0} ** 2)", lambda lo, hi: True, lambda lo, hi: (0, math.log1p(max(lo * lo, hi * hi)))),
        ("np.log1p(np.square({0}))", lambda lo, hi: True, lambda lo, hi: (0, math.log1p(max(lo * lo, hi * hi)))),
        ("np.sqrt({0} * {0} + 0.25)", lambda lo, hi: True, lambda lo, hi: (0.5, math.sqrt(max(lo * lo, hi * hi) + .25))),
        ("np.sqrt({0})", lambda lo, hi: lo >= 0.1, lambda lo, hi: (math.sqrt(lo), math.sqrt(hi))),
        ("1 / (1 + np.exp(-{0}))", lambda lo, hi: True, lambda lo, hi: (0, 1)),
        ("np.arctan({0})", lambda lo, hi: True, lambda lo, hi: (-1.6, 1.6)),
        ("np.square({0})", lambda lo, hi: True, lambda lo, hi: (0, max(lo * lo, hi * hi))),
        ("{0} ** 3", lambda lo, hi: max(-lo, hi) <= 2, lambda lo, hi: (lo ** 3, hi ** 3)),
        ("np.abs({0})", lambda lo, hi: True, lambda lo, hi: (0, max(-lo, hi))),
        ("-{0}", lambda lo, hi: True, lambda lo, hi: (-hi, -lo)),
        ("np.expm1({0})", lambda lo, hi: hi <= 3, lambda lo, hi: (math.expm1(lo), math.expm1(hi))),
        ("np.cosh({0})", lambda lo, hi: max(-lo, hi) <= 3, lambda lo, hi: (1, math.cosh(max(-lo, hi)))),
        ("np.sinh({0})", lambda lo, hi: max(-lo, hi) <= 3, lambda lo, hi: (math.sinh(lo), math.sinh(hi))),
        ("np.arcsin({0})", lambda lo, hi: max(-lo, hi) <= 0.9, lambda lo, hi: (-1.2, 1.2)),
        ("np.arccos({0})", lambda lo, hi: max(-lo, hi) <= 0.9, lambda lo, hi: (0.4, 2.7)),
        ("np.tan({0})", lambda lo, hi: max(-lo, hi) <= 1.0, lambda lo, hi: (-1.6, 1.6)),
        ("np.sign({0}) * {0}", lambda lo, hi: True, lambda lo, hi: (0, max(-lo, hi))),
        ("np.clip({0}, -0.5, 0.5)", lambda lo, hi: True, lambda lo, hi: (-0.5, 0.5)),
        ("{0}.clip(-0.7, 0.6)", lambda lo, hi: True, lambda lo, hi: (-0.7, 0.6)),
        ("np.maximum({0}, 0.0)", lambda lo, hi: True, lambda lo, hi: (0, max(hi, 0))),
        ("np.minimum({0}, 0.3)", lambda lo, hi: True, lambda lo, hi: (min(lo, 0.3), 0.3)),
        ("np.maximum({0}, 0.1 * {0})", lambda lo, hi: True, lambda lo, hi: (min(lo, 0.1 * lo), hi)),
        ("np.where({0} > 0.1, {0}, 0.5 * {0})", lambda lo, hi: True, lambda lo, hi: (min(lo, 0.5 * lo), hi)),
        # singularities guarded by np.where: the untaken branch must not leak NaN into the gradient
        ("np.where({0} > 0.05, np.sqrt({0}), 0.0)", lambda lo, hi: True, lambda lo, hi: (0, math.sqrt(max(hi, 0)))),
        ("np.where({0} > 0.1, np.log({0}), {0} - 2.3)", lambda lo, hi: True,
         lambda lo, hi: (lo - 2.3, math.log(max(hi, 0.2)))),
        ("np.where(np.abs({0}) > 0.05, np.sin({0}) / {0}, 1.0)", lambda lo, hi: True, lambda lo, hi: (-0.3, 1)),
        ("np.where({0} < 0.2, {0} ** 2, 1 / {0})", lambda lo, hi: True, lambda lo, hi: (0, 25)),
        ("abs({0}) + np.pi * {0}", lambda lo, hi: True, lambda lo, hi: (-4.2 * max(-lo, hi), 4.2 * max(-lo, hi))),
        ("{0} * np.ones_like({0}) + np.zeros_like({0}) - np.e", lambda lo, hi: True, lambda lo, hi: (lo - 2.8, hi - 2.7)),
        ("np.tanh({0}) * 0.5 + np.cos({0}) * {0}", lambda lo, hi: True,
         lambda lo, hi: (-0.5 - max(-lo, hi), 0.5 + max(-lo, hi))),
    ]

    def op_unary(self, blk):
        a = self.pick(blk)
        options = [u for u in self.UNARY if u[1](a.lo, a.hi) and not (a.pyfloat and "{0}." in u[0])]
        if a.shape == () and self.dtype == "float64":
            options += [("max({0}, 0.1) + min({0}, -0.2)", lambda lo, hi: True, lambda lo, hi: (lo - 0.2, hi + 0.1)),
                        ("math.tanh({0})", lambda lo, hi: True, lambda lo, hi: (-1, 1)),
                        ("math.exp(-{0} * {0})", lambda lo, hi: True, lambda lo, hi: (0, 1))]
        template, _, result = self.ch.choice(options)
        lo, hi = result(a.lo, a.hi)
        pyfloat = template.startswith(("math.", "max(")) or a.pyfloat and template in ("-{0}", "{0} ** 3")
        self.assign(blk, template.format(a.name), a.shape, min(lo, hi), max(lo, hi), pyfloat=pyfloat)

    # elementwise, two arguments
    def partner(self, blk, a, fresh_ok=True):
        """A second operand for `a`: a variable, a new parameter or a constant, broadcasting with `a`."""
        options = [v for v in blk.scope if v is not a and _broadcast(a.shape, v.shape) is not None
                   and int(np.prod(_broadcast(a.shape, v.shape))) <= MAX_SIZE
                   and len(_broadcast(a.shape, v.shape)) <= 3]
        kinds = {"var": 6 if options else 0, "const": 2, "same": 1, "row": 2, "column": 1, "scalar": 1, "self": 1}
        if not (fresh_ok and blk.params_allowed):
            kinds.update(same=0, row=0, column=0, scalar=0)
        if a.ndim < 1:
            kinds.update(row=0)
        if a.ndim < 2:
            kinds.update(column=0)
        kind = self.ch.weighted(kinds)
        if kind == "var":
            return self.ch.choice(options[-4:])
        if kind == "const":
            c = self.ch.choice([0.5, -1.5, 2.0, 0.25, 3.0])
            return Var(_fmt(c), (), c, c)
        if kind == "self":
            return a
        if kind == "same":
            return self.param_var(blk, "p", a.shape)
        if kind == "row":  # a bias broadcast along the leading axes
            return self.param_var(blk, "b", a.shape[-1:])
        if kind == "column":  # a keepdims column
            return self.param_var(blk, "c", a.shape[:-1] + (1,))
        p = self.scalar_param()
        v = Var(p.name, (), -1.0, 1.0, pyfloat=p.kind == "float")
        blk.scope.append(v)
        return v

    def op_binary(self, blk):
        a = self.pick(blk)
        b = self.partner(blk, a)
        shape = _broadcast(a.shape, b.shape)
        A, B = a.name, b.name
        kind = self.ch.weighted({"+": 4, "-": 3, "*": 4, "/": 2, "max": 1, "min": 1, "where": 2, "mask": 1,
                                 "pow": 1, "ufunc": 1, "poly": 1})
        prods = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi]
        pyfloat = a.pyfloat and (b.pyfloat or b.name[0] in "-0123456789") and kind in "+-*/"
        if kind == "+":
            expr, lo, hi = f"{A} + {B}", a.lo + b.lo, a.hi + b.hi
        elif kind == "-":
            expr, lo, hi = f"{A} - {B}", a.lo - b.hi, a.hi - b.lo
        elif kind == "*":
            expr, lo, hi = f"{A} * {B}", min(prods), max(prods)
        elif kind == "/":
            if b.lo >= 0.2 or b.hi <= -0.2:
                m = min(abs(b.lo), abs(b.hi))
                expr, lo, hi = f"{A} / {B}", -a.bound / m, a.bound / m
            else:
                expr, lo, hi = f"{A} / ({B} * {B} + 0.5)", -2 * a.bound, 2 * a.bound
        elif kind in ("max", "min"):
            fn = "np.maximum" if kind == "max" else "np.minimum"
            expr, lo, hi = f"{fn}({A}, {B})", min(a.lo, b.lo), max(a.hi, b.hi)
        elif kind == "where":
            cmp = self.ch.choice([">", "<", ">=", "<="])
            expr = self.ch.choice([f"np.where({A} {cmp} {B}, {A}, {B} * 0.5)",
                                   f"np.where({A} {cmp} {B}, {A} * {B}, {A} - {B})",
                                   f"np.where({B} {cmp} 0.2, np.tanh({A}), {A} ** 2)"])
            bound = max(a.bound, b.bound)
            lo, hi = -max(bound, bound * bound, 1.0) - bound, max(bound, bound * bound, 1.0) + bound
        elif kind == "mask":
            # not ~ on a comparison of Python floats: Python's ~True is -2 (see test_numerics.py)
            expr = self.ch.choice([f"np.where(({A} > 0) & ({B} < 0.5), {A} * {B}, {A})"] + (
                [] if b.pyfloat else [f"np.where(({A} > 0.3) | ~({B} > 0), {A}, 0.0)"]))
            lo, hi = min(prods + [a.lo, b.lo, 0]), max(prods + [a.hi, b.hi, 0])
        elif kind == "pow":
            if b.lo >= 0.1 and a.bound <= 3:
                expr = f"{B} ** {A}" if self.ch.coin(50) else f"np.power({B}, {A})"
                top = max(b.hi ** a.bound, b.lo ** -a.bound)
                lo, hi = 0, top
            else:
                expr, lo, hi = f"{B} ** 2 * {A}", -b.bound ** 2 * a.bound, b.bound ** 2 * a.bound
        elif kind == "ufunc":
            fn = self.ch.choice(["np.add", "np.subtract", "np.multiply"])
            expr = f"{fn}({A}, {B})"
            lo, hi = -(a.bound + b.bound + a.bound * b.bound), a.bound + b.bound + a.bound * b.bound
        else:
            expr = f"0.5 * {A} * {B} - {A} + {B} ** 2"
            bound = 0.5 * a.bound * b.bound + a.bound + b.bound ** 2
            lo, hi = -bound, bound
        self.assign(blk, expr, shape, lo, hi, pyfloat=pyfloat)

    # reductions
    def op_reduce(self, blk):
        a = self.pick(blk, lambda v: v.ndim >= 1)
        if a is None:
            return False
        fn = self.ch.weighted({"sum": 4, "mean": 3, "max": 2, "min": 1})
        form = self.ch.weighted({"np": 3, "method": 1, "amax": 1 if fn in ("max", "min") else 0})
        axis = None
        axes = tuple(range(a.ndim))
        if self.ch.coin(75):
            if a.ndim >= 2 and self.ch.coin(25):
                k = self.ch.int(0, a.ndim - 1)
                axes = tuple(x for x in range(a.ndim) if x != k)
                axis = axes if self.ch.coin(50) else tuple(reversed(axes))
                if len(axis) == 1:
                    axis = axis[0]
            else:
                k = self.ch.int(0, a.ndim - 1)
                axes = (k,)
                axis = k - a.ndim if self.ch.coin(30) else k
        keepdims = self.ch.coin(40)
        args = [] if axis is None else [f"axis={axis}"]
        if keepdims:
            args.append("keepdims=True")
        if form == "np":
            expr = f"np.{fn}({', '.join([a.name] + args)})"
        elif form == "amax":
            expr = f"np.a{fn}({', '.join([a.name] + args)})"
        else:
            expr = f"{a.name}.{fn}({', '.join(args)})"
        count = int(np.prod([a.shape[x] for x in axes])) if axes else 1
        shape = tuple(1 if x in axes else s for x, s in enumerate(a.shape)) if keepdims else \
            tuple(s for x, s in enumerate(a.shape) if x not in axes)
        lo, hi = (a.lo * count, a.hi * count) if fn == "sum" else (a.lo, a.hi)
        if self.ch.coin(25) and keepdims and fn in ("mean", "max"):
            # centre with a keepdims statistic: broadcasting back over the reduced axes
            expr = f"{a.name} - {expr}"
            lo, hi = a.lo - a.hi, a.hi - a.lo
            shape = a.shape
        self.assign(blk, expr, shape, lo, hi)

    # matrix products
    def op_matmul(self, blk):
        a = self.pick(blk, lambda v: v.ndim >= 1)
        if a is None:
            return False
        k = a.shape[-1]
        kind = self.ch.weighted({"right": 5, "left": 2, "outer": 1, "inner": 1, "transposed": 1})

        def operand(shape, prefix="W"):
            found = [v for v in blk.scope if v.shape == shape and v is not a]
            if found and (self.ch.coin(50) or not blk.params_allowed):
                return self.ch.choice(found)
            if not blk.params_allowed:
                return None
            return self.param_var(blk, prefix, shape)

        if kind == "right":  # (..., k) @ (k, n)
            n = self.dim()
            if a.ndim == 3 and self.ch.coin(30):
                w = operand((1, k, n)) if self.ch.coin(50) else operand((a.shape[0], k, n))
            else:
                w = operand((k, n)) if self.ch.coin(85) or a.ndim > 1 else operand((k,), "u")
            if w is None:
                return False
            shape = _matmul_shape(a.shape, w.shape)
            if shape is None or int(np.prod(shape)) > MAX_SIZE:
                return False
            form = self.ch.weighted({"@": 5, "dot": 2 if a.ndim <= 2 and w.ndim <= 2 else 0, "matmul": 1})
            expr = {"@": f"{a.name} @ {w.name}", "dot": f"np.dot({a.name}, {w.name})",
                    "matmul": f"np.matmul({a.name}, {w.name})"}[form]
            bound = k * a.bound * w.bound
        elif kind == "left":  # (m, k) @ a with a of shape (k,) or (k, n)
            if a.ndim > 2:
                return False
            m = self.dim()
            w = operand((m, a.shape[0]))
            if w is None:
                return False
            expr = f"{w.name} @ {a.name}" if self.ch.coin(70) else f"{w.name}.dot({a.name})"
            shape = (m,) + a.shape[1:]
            bound = a.shape[0] * a.bound * w.bound
        elif kind == "outer":
            if a.ndim != 1:
                return False
            u = operand((self.dim(),), "u")
            if u is None:
                return False
            expr, shape, bound = f"np.outer({a.name}, {u.name})", a.shape + u.shape, a.bound * u.bound
        elif kind == "inner":
            if a.ndim != 1:
                return False
            u = operand(a.shape, "u")
            if u is None:
                return False
            expr = self.ch.choice([f"{a.name} @ {u.name}", f"np.dot({a.name}, {u.name})"])
            shape, bound = (), k * a.bound * u.bound
        else:  # a.T @ b with b sharing a's leading axis
            if a.ndim != 2:
                return False
            b = operand((a.shape[0], self.dim()))
            if b is None:
                return False
            expr, shape, bound = f"{a.name}.T @ {b.name}", (a.shape[1], b.shape[1]), a.shape[0] * a.bound * b.bound
        if int(np.prod(shape)) > MAX_SIZE:
            return False
        self.assign(blk, expr, shape, -bound, bound)

    # transposes and reshapes
    def op_shape(self, blk):
        a = self.pick(blk, lambda v: v.ndim >= 1)
        if a is None:
            return False
        kind = self.ch.weighted({"T": 3, "transpose": 2, "reshape": 3, "ravel": 1, "expand": 2})
        if kind in ("T", "transpose") and a.ndim < 2:
            kind = "expand"
        if kind == "T":
            expr, shape = self.ch.choice([(f"{a.name}.T", tuple(reversed(a.shape))),
                                          (f"np.transpose({a.name})", tuple(reversed(a.shape)))])
        elif kind == "transpose":
            perm = list(range(a.ndim))
            while perm == list(range(a.ndim)):
                perm = [perm[i] for i in _permutation(self.ch, a.ndim)]
            shape = tuple(a.shape[p] for p in perm)
            expr = self.ch.choice([f"np.transpose({a.name}, {tuple(perm)})",
                                   f"{a.name}.transpose({', '.join(map(str, perm))})"])
        elif kind == "reshape":
            shape = _factor(self.ch, a.size)
            text = list(map(str, shape))
            if len(shape) > 1 and self.ch.coin(40):
                text[self.ch.int(0, len(shape) - 1)] = "-1"
            expr = self.ch.choice([f"{a.name}.reshape({', '.join(text)})",
                                   f"np.reshape({a.name}, ({', '.join(text)},))",
                                   f"{a.name}.reshape(({', '.join(text)},))"])
        elif kind == "ravel":
            shape = (a.size,)
            expr = self.ch.choice([f"{a.name}.ravel()", f"{a.name}.reshape(-1)", f"{a.name}.flatten()"])
        else:
            if a.ndim >= 3:
                return False
            axis = self.ch.int(0, a.ndim)
            shape = a.shape[:axis] + (1,) + a.shape[axis:]
            expr = self.ch.choice([f"np.expand_dims({a.name}, {axis})",
                                   f"{a.name}[{', '.join([':'] * axis + ['None'])}]"])
        self.assign(blk, expr, shape, a.lo, a.hi)

    # basic indexing
    def op_index(self, blk):
        a = self.pick(blk, lambda v: v.ndim >= 1)
        if a is None:
            return False
        parts, shape = [], []
        last = self.ch.int(0, a.ndim - 1)
        for axis, n in enumerate(a.shape[:last + 1]):
            kind = self.ch.weighted({"all": 3, "int": 2, "slice": 3, "step": 1, "reverse": 1})
            if kind == "all":
                parts.append(":")
                shape.append(n)
            elif kind == "int":
                i = self.ch.int(-n, n - 1)
                parts.append(str(i))
            elif kind == "slice":
                lo = self.ch.int(0, n - 1)
                hi = self.ch.int(lo + 1, n)
                parts.append(f"{lo}:{hi}" if hi < n or self.ch.coin(50) else f"{lo}:")
                shape.append(hi - lo)
            elif kind == "step":
                parts.append("::2")
                shape.append((n + 1) // 2)
            else:
                parts.append("::-1")
                shape.append(n)
        rest = list(a.shape[last + 1:])
        if self.ch.coin(15) and len(parts) < a.ndim:
            parts.append("...")
        elif self.ch.coin(10) and len(shape) + len(rest) < 3:
            parts.append("None")
            shape.append(1)
        shape += rest
        expr = f"{a.name}[{', '.join(parts)}]"
        self.assign(blk, expr, tuple(shape), a.lo, a.hi)

    # integer-array indexing (gathering): index arguments, lists of ints, np.arange, np.take, sorting
    def op_gather(self, blk):
        a = self.pick(blk, lambda v: v.ndim >= 1 and not v.pyfloat)
        if a is None:
            return False
        kind = self.ch.weighted({"rows": 3, "axis": 2, "take": 2, "picked": 2, "along": 1, "list": 1, "sort": 1})
        axis = self.ch.int(0, a.ndim - 1)
        n = a.shape[axis]
        if kind == "list":
            items = [self.ch.int(-n, n - 1) for _ in range(self.ch.int(1, 4))]
            expr = f"{a.name}[{', '.join([':'] * axis + [repr(items)])}]"
            shape = a.shape[:axis] + (len(items),) + a.shape[axis + 1:]
        elif kind == "sort":
            if a.ndim == 1 and self.ch.coin(40):
                expr = f"{a.name}[np.argsort({a.name})]"
            else:
                expr = f"np.sort({a.name}, axis={axis})"
            shape = a.shape
        elif kind == "picked" and a.ndim == 2:
            idx = self.new_param("k", (a.shape[0],), kind="index")
            idx.value = a.shape[1]
            expr = f"{a.name}[np.arange({a.name}.shape[0]), {idx.name}]"
            shape = (a.shape[0],)
        elif kind == "along" and a.ndim >= 1:
            m = self.ch.int(1, 3)
            ishape = a.shape[:axis] + (m,) + a.shape[axis + 1:]
            idx = self.new_param("k", ishape, kind="index")
            idx.value = n
            expr = f"np.take_along_axis({a.name}, {idx.name}, axis={axis})"
            shape = ishape
        else:
            ishape = self.ch.choice([(self.ch.int(1, 4),), (2, self.ch.int(1, 3)), ()])
            idx = self.new_param("k", ishape, kind="index")
            idx.value = n
            if kind == "take":
                expr = f"np.take({a.name}, {idx.name}, axis={axis})"
            else:
                expr = f"{a.name}[{', '.join([':'] * axis + [idx.name])}]"
            shape = a.shape[:axis] + ishape + a.shape[axis + 1:]
        if not shape or int(np.prod(shape)) > MAX_SIZE:
            return False
        self.assign(blk, expr, shape, a.lo, a.hi)

    # arrays the model makes, written element by element
    def op_alloc(self, blk):
        a = self.pick(blk, lambda v: v.ndim >= 1 and not v.pyfloat)
        if a is None:
            return False
        y = self.fresh("y")
        n = a.shape[0]
        start = self.ch.choice([f"np.zeros({a.name}.shape)", f"np.ones({a.shape!r})", f"np.zeros_like({a.name})",
                                f"np.full({a.shape!r}, 0.5)", f"{a.name}.copy()"])
        blk.write(f"{y} = {start}")
        lo, hi = min(a.lo, 0.0), max(a.hi, 1.0)
        for _ in range(self.ch.int(1, 3)):
            i = self.ch.int(0, n - 1)
            form = self.ch.weighted({"set": 2, "add": 2, "slice": 1, "loop": 1})
            if form == "set":
                blk.write(f"{y}[{i}] = np.tanh({a.name}[{i}]) * 2.0")
                lo, hi = min(lo, -2.0), max(hi, 2.0)
            elif form == "add":
                blk.write(f"{y}[{i}] += {a.name}[{n - 1 - i}] * {a.name}[{i}]")
                lo, hi = lo - a.bound ** 2, hi + a.bound ** 2
            elif form == "slice" and a.ndim >= 2:
                blk.write(f"{y}[:, 0] = {a.name}[:, -1] - 1.0")
                lo, hi = min(lo, a.lo - 1), max(hi, a.hi)
            else:
                j = self.fresh("j")
                blk.write(f"for {j} in range({n}):")
                blk.write(f"    {y}[{j}] = {y}[{j}] * 0.5 + np.sin({a.name}[{j}])")
                lo, hi = min(lo * 0.5, lo) - 1, max(hi * 0.5, hi) + 1
        blk.scope.append(Var(y, a.shape, lo, hi))
        self.assign(blk, f"{y} * 1.0", a.shape, lo, hi)

    # local lists: appended in a loop, comprehensions, stacked or summed
    def op_lists(self, blk):
        a = self.pick(blk, lambda v: not v.pyfloat and v.size * 3 <= MAX_SIZE)
        if a is None:
            return False
        hs = self.fresh("hs")
        count = self.ch.int(2, 3)
        form = self.ch.choice(["append", "comprehension"])
        h, t, g = self.fresh("h"), self.fresh("t"), self.fresh("g")
        if form == "append":
            blk.write(f"{hs} = []")
            blk.write(f"{h} = {a.name}")
            blk.write(f"for {t} in range({count}):")
            blk.write(f"    {h} = np.tanh({h} * 0.5 + {t} * 0.1)")
            blk.write(f"    {hs}.append({h})")
        else:
            blk.write(f"{hs} = [np.sin({a.name} * ({t} + 1.0)) for {t} in range({count})]")
        end = self.ch.choice(["stack", "sum", "last", "loop"])
        if end == "stack":
            self.assign(blk, f"np.stack({hs})", (count,) + a.shape, -1, 1)
        elif end == "sum":
            self.assign(blk, f"sum({hs}) + {hs}[-1] * len({hs})", a.shape, -2 * count, 2 * count)
        elif end == "last":
            self.assign(blk, f"{hs}[0] * {hs}[-1]", a.shape, -1, 1)
        else:
            out = self.fresh()
            blk.write(f"{out} = {a.name} * 0.0")
            blk.write(f"for {g} in {hs}:")
            blk.write(f"    {out} = {out} + {g} * {g}")
            blk.scope.append(Var(out, a.shape, 0, count))

    # joining arrays
    def op_concat(self, blk):
        a = self.pick(blk, lambda v: v.ndim >= 1)
        if a is None:
            return False
        stack = self.ch.coin(40)
        count = self.ch.int(2, 3)
        parts = [a]
        axis = self.ch.int(0, a.ndim if stack else a.ndim - 1)
        for _ in range(count - 1):
            same = [v for v in blk.scope if v.shape == a.shape and v is not a]
            if not stack:
                same += [v for v in blk.scope if v.ndim == a.ndim and v is not a and all(
                    s == t or i == axis for i, (s, t) in enumerate(zip(v.shape, a.shape)))]
            if same and self.ch.coin(50):
                parts.append(self.ch.choice(same))
            else:
                template = self.ch.choice(["np.tanh({0})", "{0} * 2.0", "np.sin({0}) + 1.0", "-{0}"])
                parts.append(Var(template.format(a.name), a.shape, -2 * a.bound - 1, 2 * a.bound + 1))
        names = ", ".join(p.name for p in parts)
        seq = f"[{names}]" if self.ch.coin(60) else f"({names})"
        shown_axis = axis - (a.ndim + 1 if stack else a.ndim) if self.ch.coin(25) else axis
        axis_text = "" if axis == 0 and self.ch.coin(30) else f", axis={shown_axis}"
        if stack:
            expr = f"np.stack({seq}{axis_text})"
            shape = a.shape[:axis] + (len(parts),) + a.shape[axis:]
        else:
            expr = f"np.concatenate({seq}{axis_text})"
            shape = list(a.shape)
            shape[axis] = sum(p.shape[axis] for p in parts)
            shape = tuple(shape)
        if int(np.prod(shape)) > MAX_SIZE:
            return False
        lo, hi = min(p.lo for p in parts), max(p.hi for p in parts)
        self.assign(blk, expr, shape, lo, hi)

    # module-level helpers, inlined by the compiler
    def op_helper(self, blk):
        usable = [h for h in self.helpers if self._arguments_for(blk, h) is not None]
        if usable and self.ch.coin(40):
            h = self.ch.choice(usable)
        else:
            h = self.define_helper(blk)
            if h is None:
                return False
        args = self._arguments_for(blk, h)
        call = f"{h['name']}({', '.join(v.name for v in args)})"
        if h.get("default") and self.ch.coin(50):
            call = call[:-1] + f", scale={self.ch.choice(['0.25', '2.0'])})"
            scale = 2.0
        else:
            scale = 1.0
        outs = h["outs"]
        names = [self.fresh() for _ in outs]
        if len(outs) == 1:
            blk.write(f"{names[0]} = {call}")
        elif self.ch.coin(70) or self.regions:  # (a tuple may not change in a value-dependent loop)
            blk.write(f"{', '.join(names)} = {call}")
        else:
            pair = self.fresh("r")
            blk.write(f"{pair} = {call}")
            for i, n in enumerate(names):
                blk.write(f"{n} = {pair}[{i}]")
        for n, o in zip(names, outs):
            blk.scope.append(Var(n, o.shape, o.lo * scale, o.hi * scale, o.pyfloat))

    def _arguments_for(self, blk, h):
        args = []
        for p in h["params"]:
            found = [v for v in blk.scope if v.shape == p.shape and p.lo <= v.lo and v.hi <= p.hi
                     and (p.pyfloat or not v.pyfloat)]
            if not found:
                return None
            args.append(found[-1])
        return args

    def define_helper(self, blk):
        count = 1 if len(blk.scope) < 2 or self.ch.coin(40) else 2
        chosen = []
        for _ in range(count):
            v = self.pick(blk, lambda v: v not in chosen)
            if v is None:
                return None
            chosen.append(v)
        name = self.fresh("helper")
        params = [Var(f"{name}_a{i}", v.shape, v.lo, v.hi, v.pyfloat) for i, v in enumerate(chosen)]
        inner = Block(params, 4, params_allowed=False, depth=blk.depth + 1)
        self.block(inner, self.ch.int(1, 3))
        default = self.ch.coin(30)
        outs = [inner.scope[-1]]
        if len(inner.scope) > len(params) + 1 and self.ch.coin(35):
            outs.append(inner.scope[-2])
        if default:
            out = outs[0]
            inner.write(f"{out.name} = {out.name} * scale")
        ret = ", ".join(o.name for o in outs)
        signature = ", ".join([p.name for p in params] + (["scale=1.0"] if default else []))
        lines = [f"def {name}({signature}):"] + inner.lines + [f"    return {ret}"]
        h = {"name": name, "lines": lines, "params": params,
             "outs": [Var(o.name, o.shape, o.lo, o.hi, o.pyfloat or p.pyfloat) for o in outs for p in params[:1]],
             "default": default}
        self.helpers.append(h)
        return h

    # value-dependent control flow: `if` on 0-d values, `while` with a counter guard, `break`
    def region_weights(self, blk, table):
        """The weights of the region statements in `table` (and, inside a region, what it drops)."""
        if self.regions:
            for k in ("alloc", "lists", "taps", "shared", "loop"):
                table.pop(k, None)
        if self.regions >= 2 or blk.depth > 0:
            return {}
        focus = 6 if self.region_focus else 1
        return {"value_if": 3 * focus, "value_while": 2 * focus, "break_for": focus}

    def site(self, role, form="cmp", op=None):
        """A new condition (see Site): written `_c(k, q)` until calibrate() gives it its threshold."""
        s = Site(len(self.sites), form, op or self.ch.choice([">", "<"]), role, side=self.ch.coin(50),
                 pick=self.ch.int(0, 7), frac=self.ch.choice([0.05, 0.2, 0.5]))
        self.sites.append(s)
        return s

    def quantity(self, blk, want=None):
        """A 0-d value of the block as text (a reduction of an array, or a 0-d array), or None."""
        v = self.pick(blk, lambda v: not v.pyfloat and (want is None or want(v)))
        if v is None:
            return None
        if v.shape == () and self.ch.coin(50):
            return v.name
        return f"np.{self.ch.choice(['sum', 'mean', 'max', 'min'])}({v.name})"

    def condition(self, blk):
        """A value-dependent condition: comparisons of 0-d values, np.any/np.all, and/or/not of those."""
        def one():
            if self.ch.coin(25):
                v = self.pick(blk, lambda v: not v.pyfloat and v.size > 1)
                if v is not None:
                    form = self.ch.choice(["any", "all"])
                    self.features.add("any_all")
                    return f"_c({self.site('if', form).k}, {v.name})"
            return f"_c({self.site('if').k}, {self.quantity(blk)})"

        kind = self.ch.weighted({"one": 5, "and": 1, "or": 1, "not": 1})
        if kind == "one":
            return one()
        self.features.add("and_or_not")
        if kind == "not":
            return f"not {one()}"
        return f"{one()} {kind} {self.ch.choice(['', 'not '])}{one()}"

    def region_block(self, blk, count, scope=None):
        """Statements of a region's body: one level in, reading the block's names; what they assign
        stays inside (a name bound on one path only is not readable after the region)."""
        inner = Block(blk.scope if scope is None else scope, blk.indent + 4, blk.params_allowed, blk.depth)
        self.regions += 1
        try:
            self.block(inner, count)
        finally:
            self.regions -= 1
        return inner

    def op_value_if(self, blk):
        a = self.pick(blk, lambda v: not v.pyfloat)
        if a is None or self.quantity(blk) is None:
            return False
        y = self.fresh("y")
        t1, t2, t3 = (self.ch.choice(["np.tanh({0})", "{0} * 0.5", "np.sin({0}) - {0}", "{0} * {0}"])
                      for _ in range(3))
        form = self.ch.weighted({"else": 3, "no_else": 2, "elif": 1, "ifexp": 1})
        bound = max(a.bound * a.bound, 2 * a.bound + 1)
        if form == "ifexp":
            self.assign(blk, f"{t1.format(a.name)} if {self.condition(blk)} else {t2.format(a.name)}",
                        a.shape, -bound, bound)
            self.features.add("value_if")
            return
        if form == "no_else":
            blk.write(f"{y} = {a.name} * 1.0")
        branches = [("if", t1)] + ([("elif", t3)] if form == "elif" else []) + \
            ([("else", t2)] if form != "no_else" else [])
        for word, text in branches:  # each condition written where it stands (the sites in source order)
            blk.write("else:" if word == "else" else f"{word} {self.condition(blk)}:")
            branch = self.region_block(blk, self.ch.int(0, 2))
            blk.lines += branch.lines
            made = branch.scope[-1]
            # (in float32 programs a value of the branch may be float64, np.ones(...): y would change dtype)
            extra = f" + 0.1 * np.tanh({made.name})" if made.shape == a.shape and not made.pyfloat \
                and all(made is not v for v in blk.scope) and self.dtype == "float64" else ""
            blk.write(f"    {y} = {text.format(a.name)}{extra}")
        blk.scope.append(Var(y, a.shape, -bound - 0.1, bound + 0.1))
        self.features.add("value_if")

    def op_value_while(self, blk):
        a = self.pick(blk, lambda v: not v.pyfloat and v.ndim <= 2)
        if a is None:
            return False
        h, k = self.fresh("h"), self.fresh("k")
        guard = self.ch.int(2, 6)
        form = self.ch.weighted({"while": 3, "true": 1})  # `while True:` stops by its `break` only
        blk.write(f"{h} = {a.name} * 1.0")
        blk.write(f"{k} = 0")
        carried = Var(h, a.shape, -1.5, 1.5)
        if form == "while":
            blk.write(f"while _c({self.site('while').k}, np.sum({h} * {h})) and {k} < {guard}:")
        else:
            blk.write("while True:")
        body = self.region_block(blk, self.ch.int(0, 2), blk.scope + [carried])
        blk.lines += body.lines
        last = body.scope[-1]
        mix = f" + 0.3 * np.tanh(np.mean({last.name}))" if last is not carried and not last.pyfloat \
            and self.dtype == "float64" else ""  # (float32: a float64 value, np.ones(...), would widen h)
        blk.write(f"    {h} = 0.8 * np.tanh({h}){mix}")
        if form == "true" or self.ch.coin(35):
            brk = self.site("break")
            test = f"_c({brk.k}, {self.ch.choice(['np.sum', 'np.max', 'np.mean'])}({h}))"
            if form == "true":
                blk.write(f"    {k} += 1")
                blk.write(f"    if {k} >= {guard} or {test}:")
                blk.write("        break")
            else:
                blk.write(f"    if {test}:")
                blk.write("        break")
                blk.write(f"    {k} += 1")
            self.features.add("break_while")
        else:
            blk.write(f"    {k} += 1")
        blk.scope.append(carried)
        self.features.add("value_while")

    def op_break_for(self, blk):
        a = self.pick(blk, lambda v: not v.pyfloat and v.ndim <= 2)
        if a is None:
            return False
        g, i = self.fresh("g"), self.fresh("i")
        trips = self.ch.int(2, 5)
        blk.write(f"{g} = {a.name} * 1.0")
        blk.write(f"for {i} in range({trips}):")
        carried = Var(g, a.shape, -1.5, 1.5)
        body = self.region_block(blk, self.ch.int(0, 1), blk.scope + [carried])
        blk.lines += body.lines
        blk.write(f"    {g} = 0.8 * np.tanh({g} + 0.3 * {i})")
        brk = self.site("break")
        blk.write(f"    if _c({brk.k}, {self.ch.choice(['np.sum', 'np.max', 'np.min'])}({g})):")
        blk.write("        break")
        blk.scope.append(carried)
        self.features.add("break_for")

    # control flow decided at compile time
    def op_static_if(self, blk):
        a = self.pick(blk)
        n = next((p for p in self.params if p.kind == "static"), None)
        if n is None:
            if not blk.params_allowed:
                return False
            n = Param(self.fresh("n"), "static", value=self.ch.int(1, 4))
            self.params.append(n)
        name = self.fresh()
        t1, t2 = self.ch.choice(["np.tanh({0})", "{0} * 0.5", "np.sin({0}) - {0}"]), \
            self.ch.choice(["{0} + 1.0", "np.cos({0})", "-{0}"])
        threshold = self.ch.int(1, 4)
        if self.ch.coin(60):
            blk.write(f"if {n.name} > {threshold}:")
            blk.write(f"    {name} = {t1.format(a.name)}")
            blk.write("else:")
            blk.write(f"    {name} = {t2.format(a.name)}")
        else:
            blk.write(f"{name} = {t1.format(a.name)} if {n.name} >= {threshold} else {t2.format(a.name)}")
        bound = 2 * a.bound + 1
        blk.scope.append(Var(name, a.shape, -bound, bound, a.pyfloat))

    def op_augassign(self, blk):
        a = self.pick(blk)
        b = self.pick(blk, lambda v: _broadcast(a.shape, v.shape) == a.shape)
        name = self.fresh()
        blk.write(f"{name} = {a.name} * 1.5")
        op = self.ch.choice(["+=", "-=", "*="])
        blk.write(f"{name} {op} {b.name}")
        bound = 1.5 * a.bound * (b.bound if op == "*=" else 1) + (b.bound if op != "*=" else 0)
        blk.scope.append(Var(name, a.shape, -bound, bound, a.pyfloat))

    def op_unpack(self, blk):
        a = self.pick(blk, lambda v: v.ndim >= 1 and v.shape[0] in (2, 3))
        if a is None:
            b = self.pick(blk)
            n1, n2 = self.fresh(), self.fresh()
            blk.write(f"{n1}, {n2} = {b.name} * 2.0, np.tanh({b.name})")
            blk.scope += [Var(n1, b.shape, 2 * b.lo, 2 * b.hi, b.pyfloat), Var(n2, b.shape, -1, 1)]
            return
        names = [self.fresh() for _ in range(a.shape[0])]
        blk.write(f"{', '.join(names)} = {a.name}")
        blk.scope += [Var(n, a.shape[1:], a.lo, a.hi) for n in names]

    # the softmax family, recognised by the compiler
    def op_softmax(self, blk):
        z = self.pick(blk, lambda v: v.ndim == 2 and v.shape[1] >= 2)
        if z is None:
            return False
        axis = self.ch.choice([1, -1])
        m, s, out = self.fresh("m"), self.fresh("s"), self.fresh()
        kind = self.ch.weighted({"ce": 2, "softmax": 1, "lse": 1})
        blk.write(f"{m} = np.max({z.name}, axis={axis}, keepdims=True)")
        blk.write(f"{s} = {z.name} - {m}")
        if kind == "ce":
            y = self.new_param("y", z.shape, kind="onehot")
            blk.write(f"{out} = {s} - np.log(np.sum(np.exp({s}), axis={axis}, keepdims=True))")
            blk.scope.append(Var(out, z.shape, -2 * z.bound - 3, 0))
            name = self.fresh()
            blk.write(f"{name} = -np.mean(np.sum({y.name} * {out}, axis={axis}))")
            blk.scope.append(Var(name, (), 0, 2 * z.bound + 3))
        elif kind == "softmax":
            e = self.fresh("e")
            blk.write(f"{e} = np.exp({s})")
            blk.write(f"{out} = {e} / np.sum({e}, axis={axis}, keepdims=True)")
            blk.scope.append(Var(out, z.shape, 0, 1))
        else:
            blk.write(f"{out} = {m}[:, 0] + np.log(np.sum(np.exp({s}), axis={axis}))")
            blk.scope.append(Var(out, z.shape[:1], -z.bound, z.bound + 2))

    # data arguments: masks and labels that are not differentiated
    def op_data(self, blk):
        a = self.pick(blk, lambda v: v.ndim >= 1)
        if a is None:
            return False
        kind = self.ch.choice(["mask", "intmask"] if self.dtype == "float64" else ["mask"])
        p = self.new_param("mask" if kind == "mask" else "k", a.shape, kind=kind)
        if kind == "mask":
            expr = self.ch.choice([f"np.where({p.name}, {a.name}, 0.5 * {a.name})",
                                   f"np.where({p.name} & ({a.name} > 0), {a.name}, 0.0)"])
            lo, hi = min(a.lo, 0.5 * a.lo, 0), max(a.hi, 0)
        else:
            expr = f"{a.name} * {p.name} + {a.name} * 0.25"
            lo, hi = 1.25 * min(a.lo, 0), 1.25 * max(a.hi, 0)
        self.assign(blk, expr, a.shape, lo, hi)

    # Python floats and shapes as numbers
    def op_scalar(self, blk):
        a = self.pick(blk)
        p = self.scalar_param()
        kind = self.ch.choice(["math", "shape", "np"])
        if kind == "math" and self.dtype == "float64":
            c = self.fresh("c")
            blk.write(f"{c} = math.tanh({p.name}) + math.exp(-{p.name} * {p.name})")
            blk.scope.append(Var(c, (), -1, 2, pyfloat=True))
            self.assign(blk, f"{a.name} * {c}", a.shape, -2 * a.bound, 2 * a.bound, pyfloat=a.pyfloat)
        elif kind == "shape" and a.ndim >= 1:
            self.assign(blk, f"{a.name} * {p.name} / {a.name}.shape[{a.ndim - 1}] + {a.name}.size * 0.01",
                        a.shape, -a.bound - a.size * 0.01, a.bound + a.size * 0.01)
        else:
            self.assign(blk, f"np.tanh({p.name}) * {a.name} + {p.name} ** 2", a.shape, -a.bound, a.bound + 1)

    # `for` loops over stacked weights, unrolled by the compiler
    def op_loop(self, blk):
        if self.loops >= 2:
            return False
        h = self.pick(blk, lambda v: v.ndim in (1, 2) and v.shape[-1] <= 5)
        if h is None:
            return False
        self.loops += 1
        n = h.shape[-1]
        trips = self.ch.int(1, 4)
        scale = 1.0 / n
        Ws = self.new_param("Ws", (trips, n, n), -scale * 1.5, scale * 1.5)
        bs = self.new_param("bs", (trips, n), -0.5, 0.5)
        carried = self.fresh("h")
        blk.write(f"{carried} = {h.name}")
        act = self.ch.choice(["np.tanh({0})", "np.sin({0})", "1 / (1 + np.exp(-{0}))", "{0} / (1 + np.abs({0}))",
                              "np.maximum({0}, 0.1 * {0})"])
        acc = self.fresh("acc") if self.ch.coin(40) else None
        if acc:
            blk.write(f"{acc} = 0.0")
        form = self.ch.weighted({"range": 4, "shape": 2, "static": 2, "iterate": 1, "zip": 1, "enumerate": 1,
                                 "reversed": 1})
        index = "i"
        body = []
        if form in ("range", "shape", "static", "reversed"):
            if form == "range":
                bound = str(trips)
            elif form == "shape":
                bound = self.ch.choice([f"{Ws.name}.shape[0]", f"len({bs.name})"])
            elif form == "static":
                static = Param(self.fresh("n"), "static", value=self.ch.int(1, trips))
                self.params.append(static)
                bound = static.name
            else:
                bound = f"{trips}"
            loop = f"for i in reversed(range({bound})):" if form == "reversed" else f"for i in range({bound}):"
            W, b = f"{Ws.name}[i]", f"{bs.name}[i]"
        elif form == "iterate":
            loop, W, b = f"for w in {Ws.name}:", "w", "0.0"
            index = None
        elif form == "zip":
            loop, W, b = f"for w, b in zip({Ws.name}, {bs.name}):", "w", "b"
            index = None
        else:
            loop, W, b = f"for i, w in enumerate({Ws.name}):", "w", f"{bs.name}[i]"
        body.append(f"{carried} = {act.format(f'({carried} @ {W} + {b})')}")
        if index and self.ch.coin(30):
            body.append(f"if i % 2 == 1:")
            body.append(f"    {carried} = {carried} * 0.5")
        stop = index and self.ch.coin(15)
        if self.ch.coin(15):  # a nested loop over a tuple of constants
            body.append("for c in (0.5, 0.25):")
            body.append(f"    {carried} = {carried} * (1 - c) + c * np.tanh({carried})")
        if acc:
            weight = "(i + 1)" if index else "0.5"
            if self.ch.coin(50):
                body.append(f"{acc} += np.sum({carried} ** 2) * {weight}")
            else:
                body.append(f"{acc} = {acc} + np.sum({carried} ** 2) * {weight}")
        if stop:  # after the accumulation, so that `acc` is an array by then (NumPy's np.* of 0.0 is float64)
            body.append(f"if i == {trips - 2}:")
            body.append(f"    break")
        blk.write(loop)
        for line in body:
            blk.write("    " + line)
        blk.scope.append(Var(carried, h.shape, -2, 2))
        if acc:
            blk.scope.append(Var(acc, (), 0, 4 * trips * h.size * 4))

    # static loops whose index picks elements and moves slices, accumulated (a convolution written as a loop)
    def op_taps(self, blk):
        if self.tap_loops >= 2:
            return False
        a = self.pick(blk, lambda v: 1 <= v.ndim <= 3 and max(v.shape) >= 2 and not v.pyfloat)
        if a is None:
            return False
        axis = self.ch.int(0, min(a.ndim, 2) - 1)
        length = a.shape[axis]
        if length < 2 and a.ndim >= 2:
            axis, length = 1 - axis, a.shape[1 - axis]
        if length < 2:
            return False
        form = self.ch.weighted({"slices": 4, "elements": 2, "nested": 1 if length >= 3 else 0})
        lead = ":, " * axis
        if form == "nested":
            k1 = self.ch.int(2, length - 1)
            k2 = self.ch.int(1, length - k1 + 1)
            n = length - (k1 - 1) - (k2 - 1)
            w = self.new_param("W", (k1, k2), -1.0, 1.0)
            taps, tap = k1 * k2, f"{w.name}[i, j]"
            window = f"{a.name}[{lead}i + j:i + j + {n}]"
            shape = a.shape[:axis] + (n,) + a.shape[axis + 1:]
            wbound = 1.0
        else:
            k = self.ch.int(1 if form == "elements" else 2, min(4, length))
            n = length - k + 1 if form == "slices" else None
            shape = a.shape[:axis] + ((n,) if n else ()) + a.shape[axis + 1:]
            # the taps: a new weight vector, a weight per tap of the window's shape, or elements of a value
            found = [v for v in blk.scope if v.ndim == 1 and v.shape[0] >= k and not v.pyfloat]
            tensor = bool(shape) and k * int(np.prod(shape)) <= MAX_SIZE
            source = self.ch.weighted({"param": 4, "tensor": 1 if tensor else 0, "value": 2 if found else 0})
            if source == "value":
                wv = self.ch.choice(found[-3:])
                name, wbound = wv.name, wv.bound
            elif source == "tensor":
                name, wbound = self.new_param("W", (k,) + shape, -1.0, 1.0).name, 1.0
            else:
                name, wbound = self.new_param("w", (k,), -1.0, 1.0).name, 1.0
            taps, tap = k, f"{name}[j]"
            if form == "slices":
                window = self.ch.choice([f"{a.name}[{lead}j:j + {n}]", f"{a.name}[{lead}j:{n} + j]"])
                if a.ndim > axis + 1 and self.ch.coin(40):
                    window = window[:-1] + ", :]"
            else:
                window = f"{a.name}[{lead}j]"
        acc = self.fresh("acc")
        first = window.replace("i + j", "0").replace("j", "0") if form != "nested" else None
        start = self.ch.weighted({"zeros": 3, "first": 1 if form != "nested" else 0})
        if start == "zeros":
            zero = window.replace("i + j", "0").replace("j", "0")
            blk.write(self.ch.choice([f"{acc} = 0.0 * {zero}", f"{acc} = np.zeros_like({zero})"]))
        else:
            blk.write(f"{acc} = {tap.replace('j', '0')} * {first}")
        update = self.ch.weighted({"=+": 3, "+=": 2, "-=": 1, "=-": 1})
        term = f"{tap} * {window}" if self.ch.coin(70) else f"{window} * {tap}"
        line = {"=+": f"{acc} = {acc} + {term}", "+=": f"{acc} += {term}", "-=": f"{acc} -= {term}",
                "=-": f"{acc} = {acc} - {term}"}[update]
        if form == "nested":
            blk.write(f"for i in range({w.shape[0]}):")
            blk.write(f"    for j in range({w.shape[1]}):")
            blk.write(f"        {line}")
        else:
            lo = 1 if start == "first" else 0
            loop = self.ch.choice([f"for j in range({lo}, {k}):" if lo else f"for j in range({k}):",
                                   f"for j in reversed(range({lo}, {k})):" if lo else f"for j in reversed(range({k})):"])
            blk.write(loop)
            blk.write(f"    {line}")
        self.tap_loops += 1
        bound = taps * wbound * a.bound
        v = Var(acc, shape, -bound, bound)
        blk.scope.append(v)
        if bound > LIMIT:
            self.assign(blk, acc, shape, -bound, bound)

    # one operand shared by several products, combined elementwise (differentiated w.r.t. each argument)
    def op_shared(self, blk):
        v = self.pick(blk, lambda u: u.ndim in (1, 2) and not u.pyfloat)
        if v is None:
            return False
        side = self.ch.weighted({"right": 3, "left": 2})
        count = self.ch.int(2, 3)
        m = self.dim()
        k = v.shape[0] if side == "right" else v.shape[-1]
        wshape = (m, k) if side == "right" else (k, m)
        shape = (m,) + v.shape[1:] if side == "right" else v.shape[:-1] + (m,)
        if int(np.prod(shape)) > MAX_SIZE:
            return False
        same_matrix = self.ch.coin(25)
        matrices = []
        for _ in range(1 if same_matrix else count):
            found = [u for u in blk.scope if u.shape == wshape and u is not v]
            matrices.append(self.ch.choice(found) if found and self.ch.coin(30) else self.param_var(blk, "A", wshape))
        wraps = ["{0}", "np.tanh({0})", "np.sin({0})", "1 / (1 + np.exp(-({0})))", "np.exp(-({0}) ** 2)", "np.cos({0})"]
        products, bound = [], 1.0
        for p in range(count):
            A = matrices[0 if same_matrix else p]
            operand = v.name if not same_matrix or p == 0 else f"np.tanh({v.name})"
            product = f"{A.name} @ {operand}" if side == "right" else f"{operand} @ {A.name}"
            if self.ch.coin(20):
                product = f"np.dot({A.name}, {operand})" if side == "right" else f"np.dot({operand}, {A.name})"
            wrap = "{0}" if p == 0 else self.ch.choice(wraps)
            pbound = k * A.bound * (v.bound if operand == v.name else 1.0)
            if wrap == "{0}":
                wrap, pbound = ("{0}", pbound) if pbound <= 3 else ("np.tanh({0})", 1.0)
            else:
                pbound = 1.0
            text = wrap.format(product) if wrap != "{0}" else f"({product})"  # `a * A @ v` is (a * A) @ v
            if self.ch.coin(50):  # named, as a reader writes it
                name = self.fresh()
                blk.write(f"{name} = {text}")
                text = name
            products.append(text)
            bound = bound * pbound if p else pbound
        ops = [self.ch.choice(["*", "*", "+", "-"]) for _ in products[1:]]
        expr = products[0]
        for op, t in zip(ops, products[1:]):
            expr = f"({expr}) {op} {t}" if op == "*" else f"{expr} {op} {t}"
        bound = 3.0 ** count * max(bound, 1.0)
        if self.ch.coin(50):
            expr = self.ch.choice([f"np.sum({expr})", f"np.mean({expr})"])
            shape = ()
            bound *= int(np.prod(v.shape))
        self.assign(blk, expr, shape, -bound, bound)
        self.every_wrt = True

    # -- the whole module --
    def program(self, seed):
        x = self.new_param("x", self.shape(self.ch.weighted({2: 4, 1: 2, 3: 1})))
        scope = [Var(x.name, x.shape, x.low, x.high)]
        if self.ch.coin(40):
            w = self.new_param("w", self.shape())
            scope.append(Var(w.name, w.shape, w.low, w.high))
        body = Block(scope, 4, params_allowed=True)
        self.block(body, self.ch.int(2, 9))
        # the loss: a few reductions, the last value always among them
        terms = []
        text = "\n".join(body.lines)
        # values nothing reads: most of them join the loss, so that little of the program is dead
        sinks = [v for v in body.scope[:-1] if len(re.findall(rf"\b{v.name}\b", text)) <= 1]
        finals = [body.scope[-1]] + [v for v in sinks if self.ch.coin(70)][:3]
        for v in finals:
            r = self.ch.weighted({"sumsq": 3, "mean": 2, "tanh": 1, "method": 1, "max": 1})
            if v.shape == () and self.ch.coin(50):
                terms.append(v.name)
            elif r == "sumsq":
                terms.append(f"np.sum({v.name} * {v.name})")
            elif r == "mean":
                terms.append(f"np.mean({v.name})")
            elif r == "tanh":
                terms.append(f"np.sum(np.tanh({v.name}))")
            elif r == "method" and not v.pyfloat:
                terms.append(f"{v.name}.sum()")
            else:
                terms.append(f"np.max({v.name})")
        body.write(f"return {' + '.join(terms)}")
        # arguments: the order parameters were created in, data and statics shuffled in
        params = self.params
        header = ["import math", "", "import numpy as np", "", ""]
        helpers = []
        for h in self.helpers:
            helpers += h["lines"] + ["", ""]
        source = "\n".join(header + helpers + [f"def model({', '.join(p.name for p in params)}):"]
                           + body.lines) + "\n"
        source, seed, close = self.calibrated(source, seed)
        differentiable = [i for i, p in enumerate(params) if p.differentiable]
        chosen = [i for i in differentiable if self.ch.coin(60)] or [differentiable[0]]
        style = self.ch.weighted({"indices": 2, "names": 2, "single": 1})
        if style == "single":
            wrt = params[chosen[0]].name if self.ch.coin(50) else chosen[0]
            chosen = chosen[:1]
        elif style == "names":
            wrt = tuple(params[i].name for i in chosen)
        else:
            wrt = tuple(chosen)
        layouts = {}
        if self.ch.coin(70):
            for i, p in enumerate(params):
                if p.kind not in ("float", "static"):
                    kind = self.ch.weighted(LAYOUTS)
                    if kind != "C":
                        layouts[i] = kind
        if layouts:
            self.features.add("layouts")
        return Program(source, params, wrt, tuple(chosen), self.dtype, seed,
                       with_value=self.ch.coin(80), features=self.features, every_wrt=self.every_wrt,
                       layouts=layouts, too_close=close)

    def calibrated(self, source, seed):
        """The source with its value-dependent conditions' thresholds (calibrate), the argument seed they
        were chosen on, and whether, on every one of a few seeds, some evaluation came within MARGIN of
        its threshold (then the program is not a fair finite-difference test: check() skips it)."""
        if not self.sites:
            return source, seed, False
        for attempt in range(4):  # on arguments too close to a branch boundary: others
            args = Program(source, self.params, (), (), self.dtype, seed + 7919 * attempt).arguments()
            thresholds, ok = calibrate(source, self.sites, args)
            if ok:
                return written(source, self.sites, thresholds), seed + 7919 * attempt, False
        return written(source, self.sites, thresholds), seed + 7919 * attempt, True


def _matmul_shape(a, b):
    try:
        return np.matmul(np.zeros(a), np.zeros(b)).shape
    except ValueError:
        return None


def _permutation(ch, n):
    items = list(range(n))
    out = []
    while items:
        out.append(items.pop(ch.int(0, len(items) - 1)))
    return out


def _factor(ch, size):
    """A random shape (1 to 3 axes) with `size` elements."""
    divisors = [d for d in range(1, size + 1) if size % d == 0]
    first = ch.choice(divisors)
    rest = size // first
    if rest == 1 or ch.coin(40):
        return (first, rest) if rest > 1 or ch.coin(30) else (first,)
    divisors = [d for d in range(1, rest + 1) if rest % d == 0]
    second = ch.choice(divisors)
    return (first, second, rest // second)


def generate(chooser, regions=False) -> Program:
    """One random valid program (`regions`: with value-dependent `if`, `while` and `break` far more often)."""
    dtype = "float32" if chooser.coin(25) else "float64"
    seed = chooser.int(0, 2**31 - 1)
    gen = Generator(chooser, dtype)
    gen.region_focus = regions
    return gen.program(seed)


# ---- running one program ----------------------------------------------------------------------

_counter = itertools.count()


def load(source, directory, stem="fuzz"):
    """Write `source` to a fresh file in `directory` and import it (the compiler reads source files)."""
    path = Path(directory) / f"{stem}_{os.getpid()}_{next(_counter)}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, path


class Skip(Exception):
    """The program is not a fair test at these arguments (a value overflowed, or a kink is too close)."""


def _call(model, args):
    with np.errstate(all="ignore"):
        return model(*args)


def _as_tuple(grads, program):
    single = isinstance(program.wrt, (str, int))
    return (grads,) if single else tuple(grads)


def run_backend(program, model, args, backend):
    """(value, gradients) from the compiled gradient function, with the checks of its output types."""
    make = sb.value_and_grad if program.with_value else sb.grad
    f = make(model, wrt=program.wrt, backend=backend)
    copies = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    out = f(*args)
    for a, c in zip(args, copies):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, c, err_msg=f"{backend}: an input was modified")
    if program.with_value:
        value, grads = out
    else:
        value, grads = None, out
    grads = _as_tuple(grads, program)
    assert len(grads) == len(program.wrt_indices)
    for g, i in zip(grads, program.wrt_indices):
        x = args[i]
        if isinstance(x, float) or (isinstance(x, np.ndarray) and x.shape == () and x.dtype == np.float64):
            assert type(g) is float, f"{backend}: gradient of {program.params[i].name} is {type(g).__name__}"
        elif isinstance(x, np.ndarray) and x.shape == ():
            assert np.asarray(g).dtype == x.dtype and np.shape(g) == (), (backend, type(g))
        else:
            assert isinstance(g, np.ndarray), f"{backend}: gradient is {type(g).__name__}"
            assert g.shape == x.shape and g.dtype == x.dtype, \
                f"{backend}: gradient of {program.params[i].name} is {g.dtype}{g.shape}, not {x.dtype}{x.shape}"
    return f, value, grads


@contextmanager
def _step(eps):
    saved = gradcheck.EPS
    gradcheck.EPS = eps
    try:
        yield
    finally:
        gradcheck.EPS = saved


def check_gradients(model, grads, args, program, loss):
    """Central differences (tests/gradcheck.py); a mismatch near a kink is a Skip, not a failure."""
    atol = 1e-6 * max(1.0, abs(loss))
    try:
        gradcheck.assert_gradients_match(model, grads, args, program.wrt_indices, rtol=1e-4, atol=atol)
        return
    except AssertionError as first:
        failure = first
    # a smaller step: if the two differences disagree, the stencil straddles a kink (or a jump)
    for g, i in zip(grads, program.wrt_indices):
        coarse, probe = gradcheck.numerical_gradient(model, args, i)
        with _step(gradcheck.EPS / 16):
            fine, _ = gradcheck.numerical_gradient(model, args, i)
        got = np.asarray(g, dtype=np.float64).reshape(-1)[probe]
        c, f = coarse.reshape(-1)[probe], fine.reshape(-1)[probe]
        near = ~np.isclose(c, f, rtol=1e-4, atol=atol)
        wrong = ~np.isclose(got, f, rtol=1e-4, atol=4 * atol) & ~np.isclose(got, c, rtol=1e-4, atol=atol)
        if (wrong & ~near).any():
            raise failure
        if (wrong & near).any():
            raise Skip("a kink or jump lies within the finite-difference step")


def _scale(*xs):
    return max([1.0] + [float(np.max(np.abs(np.asarray(x, dtype=np.float64)))) for x in xs if np.size(x)])


def assert_close(got, want, rtol, atol_factor, what):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol_factor * _scale(want), err_msg=what)


@contextmanager
def _timed(timings, backend):
    """Seconds spent in `backend` (compiling and calling), added to timings[backend]."""
    start = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[backend] = timings.get(backend, 0.0) + time.perf_counter() - start


#: the features of value-dependent `if`/`while`/`break` (issue 14), checked on both backends like the rest
REGION_FEATURES = frozenset({"value_if", "value_while", "break_while", "break_for"})


def check(program, directory, backends=("numpy", "llvm"), determinism=True, timings=None):
    """Every promise for one valid program; raises AssertionError (or what escaped) on a failure, Skip to discard.

    The program's `wrt`, then (every_wrt) each differentiable argument alone, then the arguments in
    the program's layouts against contiguous copies of them. A Skip from one part (a kink in the
    finite-difference check) does not stop the others; it is raised at the end."""
    if program.too_close:
        raise Skip("a value-dependent condition came within MARGIN of its threshold on every argument draw")
    module, path = load(program.source, directory)
    model = module.model
    args = program.arguments()
    want = _call(model, args)
    if not np.isfinite(want):
        raise Skip("the loss is not finite in plain NumPy")
    parts = [(program, determinism)]
    if program.every_wrt:
        parts += [(dataclasses.replace(program, wrt=(i,), wrt_indices=(i,)), False)
                  for i, p in enumerate(program.params) if p.differentiable and (i,) != tuple(program.wrt_indices)]
    skipped = None
    for part, again in parts:
        try:
            _check_wrt(part, model, args, want, backends, again, timings)
        except Skip as why:
            skipped = skipped or why
    if program.layouts:
        check_layouts(program, model, args, backends, timings)
    if skipped is not None:
        raise skipped


def check_layouts(program, model, args, backends, timings=None):
    """The arguments as strided, Fortran-order, read-only and broadcast views give the numbers a contiguous
    copy of them gives, on every backend (and are not modified)."""
    viewed = program.in_layouts(args)
    copies = [np.array(a, order="C", copy=True) if isinstance(a, np.ndarray) else a for a in viewed]
    tol = (1e-12, 1e-13) if program.dtype == "float64" else (1e-5, 1e-6)
    shown = {program.params[i].name: kind for i, kind in program.layouts.items()}
    for backend in backends:
        with _timed(timings, backend):
            _, value, grads = run_backend(program, model, viewed, backend)
            _, ref_value, ref_grads = run_backend(program, model, copies, backend)
        if value is not None:
            assert_close(value, ref_value, *tol, f"{backend}: the value for arguments in layouts {shown} differs "
                                                 "from the value for contiguous copies")
        for g, r, i in zip(grads, ref_grads, program.wrt_indices):
            assert_close(g, r, *tol, f"{backend}: the gradient of {program.params[i].name} for arguments in "
                                     f"layouts {shown} differs from the one for contiguous copies")


def _check_wrt(program, model, args, want, backends, determinism, timings):
    results = {}
    for backend in backends:
        with _timed(timings, backend):
            f, value, grads = run_backend(program, model, args, backend)
        if value is not None:
            if program.dtype == "float64":
                assert_close(value, want, 1e-10, 1e-12, f"{backend}: value differs from plain NumPy")
            else:
                assert np.asarray(value).dtype == np.asarray(want).dtype, \
                    f"{backend}: the value is {np.asarray(value).dtype}, plain NumPy gives {np.asarray(want).dtype}"
                assert_close(value, want, 2e-3, 2e-4, f"{backend}: float32 value differs from plain NumPy")
        results[backend] = grads
        if determinism:
            again = (sb.value_and_grad if program.with_value else sb.grad)(model, wrt=program.wrt, backend=backend)
            with _timed(timings, backend):
                again.specialise(*args)
            if again.source != f.source:
                import difflib
                diff = "\n".join(list(difflib.unified_diff(f.source.split("\n"), again.source.split("\n"),
                                                            lineterm="", n=1))[:40])
                raise AssertionError(f"{backend}: compiling twice gave different code\n{diff}")
    if "numpy" in results and "llvm" in results:
        for a, b, i in zip(results["numpy"], results["llvm"], program.wrt_indices):
            tol = (1e-9, 1e-10) if program.dtype == "float64" else (2e-3, 2e-4)
            assert_close(b, a, tol[0], tol[1], f"backends disagree on the gradient of {program.params[i].name}")
    grads = next(iter(results.values()))
    if program.dtype == "float64":
        check_gradients(model, grads, args, program, float(want))
    else:
        check_float32(program, model, results)


def check_float32(program, model, results):
    """float32 results agree with the float64 ones within float32 tolerance (unless a kink is close)."""
    args64 = program.arguments("float64")
    want = _call(model, args64)
    if not np.isfinite(want):
        raise Skip("the loss is not finite in plain NumPy")
    g64 = _as_tuple(sb.value_and_grad(model, wrt=program.wrt)(*args64)[1], program)
    for backend, grads in results.items():
        for g, r, i in zip(grads, g64, program.wrt_indices):
            got, ref = np.asarray(g, np.float64), np.asarray(r, np.float64)
            if not np.allclose(got, ref, rtol=5e-3, atol=5e-3 * _scale(ref)):
                # a comparison that flips between float32 and float64 changes the branch: not a fair test
                try:
                    check_gradients(model, g64, args64, program, float(want))
                except Skip:
                    raise
                except AssertionError:
                    pass
                raise AssertionError(f"{backend}: float32 gradient of {program.params[i].name} differs from "
                                     f"float64 by {np.max(np.abs(got - ref)):.3g} (scale {_scale(ref):.3g})")


if __name__ == "__main__":
    sys.exit("the long run is `python -m tests.fuzz --examples N` from the repository root (tests/fuzz.py)")
