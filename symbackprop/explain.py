"""The backprop table, as taught: each forward operation, then each adjoint step in reverse.

A backward row reads `gradient = residual * local derivative`: the residual is
the incoming gradient of the operation's output (`d_h`), the local derivative
is SymPy's `diff` of an elementwise body rewritten in terms of the forward
output the way the compiler does (`tanh' = 1 - h**2`), or the adjoint rule of a
matrix or shape operation (`g @ W.T`, `broadcast g`). `backprop_table` gives
the rows as data (SymPy expressions over the user's names); `explain` prints
them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy
from sympy.core.parameters import distribute
from sympy.printing.precedence import PRECEDENCE

from .backends.numpy.writer import Writer
from .backends.numpy.printer import _NUMPY_FUNCS, NumpyPrinter
from .backends.numpy import rules as numpy_rules
from .errors import Loc
from .ir import Node, Value
from .pipeline import stages
from .primitives.composite import LogSoftmax, Softmax, SoftmaxFamily
from .primitives.elementwise import Fill, Kernel, arg, expand
from .primitives.index import Index
from .primitives.kernel_adjoint import local_derivative, out_symbol
from .primitives.reduce import Sum, axis_text
from .primitives import scalar
from .primitives.scalar import recognise
from .primitives.shape import Reshape, SumTo, Transpose
from .transforms.reverse import depends_on

#: closed forms longer than this are not printed; later rows then use the gradient's name
CLOSED_FORM_LIMIT = 72


# ---- printing SymPy bodies with the user's names -------------------------------

class Summed(sympy.Function):
    """sum_to(x, shape) in a closed form: args are (x, from_shape, to_shape) as Tuples."""

    is_real = True


class MathText(NumpyPrinter):
    """Kernel bodies as a person writes them: `tanh(z)`, `1 - h**2`, `where(x > 0, ...)`."""

    funcs = {name: text.removeprefix("np.") for name, text in _NUMPY_FUNCS.items()}
    sqrt = "sqrt"

    def __init__(self, names=None):
        super().__init__(names or {})

    def pow(self, base, e):  # the math, not the fastest NumPy spelling
        b = self.parenthesize(base, PRECEDENCE["Pow"], strict=True)
        return f"{b}**{self.parenthesize(e, PRECEDENCE['Pow'], strict=True)}"

    def where(self, c, a, b):
        cond = self._print(c)
        if isinstance(c, scalar.BOOL_FUNCTIONS) and cond.startswith("(") and cond.endswith(")"):
            cond = cond[1:-1]  # where(s > 0.5, ...), not where((s > 0.5), ...)
        return f"where({cond}, {self._print(a)}, {self._print(b)})"

    def _print_logical_not(self, expr):
        return f"~{self.parenthesize(expr.args[0], PRECEDENCE['Not'])}"

    def _print_Infinity(self, expr):
        return "inf"

    def _print_NegativeInfinity(self, expr):
        return "-inf"

    def _print_NaN(self, expr):
        return "nan"

    def _print_Exp1(self, expr):
        return "e"

    def _print_Pi(self, expr):
        return "pi"

    def _print_Summed(self, expr):
        x, src, dst = expr.args
        return sum_to_text(_atom(self._print(x)), tuple(int(s) for s in src), tuple(int(s) for s in dst))


def math_text(expr) -> str:
    return MathText().doprint(expr)


def _tmp_value(shape, dtype=None):
    return Value(shape, dtype or "float64")


def _numpy_text(prim, inputs, attrs, args):
    """What the NumPy backend prints for `prim` applied to `args` (a node built only to be printed)."""
    node = Node(prim, inputs, attrs, None)
    return numpy_rules.write(node, list(args), None)


def sum_to_text(x: str, shape, to_shape) -> str:
    """`x` summed down to `to_shape`, the way the generated code writes it."""
    return _numpy_text(SumTo, [_tmp_value(shape)], {"shape": tuple(to_shape)}, [x])


def summed_axes(shape, to_shape):
    lead = len(shape) - len(to_shape)
    return frozenset(range(lead)) | {lead + i for i, s in enumerate(to_shape) if s == 1 and shape[lead + i] != 1}


def _atom(text: str) -> str:
    """`text` as an operand of a method call: `d_h`, or `(d_h*(1 - h**2))`."""
    return text if text.isidentifier() else f"({text})"


def _parenthesize(text: str) -> str:
    depth = 0
    for i, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0 and ch in "+-" and i > 0:
            return f"({text})"
    return text


def times(g: str, local: sympy.Expr, printed: str) -> str:
    """`g * local` as written in a backprop table (the residual first)."""
    if local == 1:
        return g
    if local == -1:
        return f"-{g}"
    if local.is_Number:
        return MathText().doprint(sympy.Symbol(g) * local)
    return f"{g} * {_parenthesize(printed)}" if not printed.startswith("-") else f"{g} * ({printed})"


# ---- the table as data ---------------------------------------------------------

@dataclass
class Step:
    """One forward operation."""

    index: int                  # 1-based, in execution order
    loc: Loc
    outputs: tuple              # user-facing names of its results
    operation: str              # "y_hat = b + w*x"
    kind: str                   # the primitive's describe(): "elementwise", "matmul", ...
    bodies: tuple = ()          # elementwise: one SymPy body per output, over the input names
    inputs: tuple = ()          # names of its inputs


@dataclass
class Adjoint:
    """One backward step: the gradient an operation sends to one of its inputs."""

    step: int                   # the forward Step this differentiates
    loc: Loc
    output: str                 # the forward value differentiated (`y_hat`)
    input: str                  # the value the gradient flows to (`w`)
    residual: str               # the incoming gradient (`d_y_hat`)
    seed: bool                  # the residual is d_loss = 1
    local: sympy.Expr | None    # d output / d input, elementwise operations only
    rule: str                   # the local derivative as printed: "x", or "g @ W.T" for a rule
    gradient: str               # the gradient produced (`d_w`)
    contribution: str           # "d_y_hat * x"
    closed: str | None = None   # the contribution in forward values only: "2*x*(y_hat - y)/5"
    accumulates: bool = False   # an earlier row already contributed to the same gradient
    note: str = ""


@dataclass
class Table:
    title: str
    wrt: tuple
    forward: list = field(default_factory=list)
    backward: list = field(default_factory=list)
    gradients: list = field(default_factory=list)    # (parameter, gradient name, expression, closed form)
    symbols: dict = field(default_factory=dict)      # user name -> SymPy symbol used in bodies and locals


@dataclass
class _Part:
    """One contribution to a gradient: its closed form (None: refer to it by name) and zero-sum axes."""

    closed: sympy.Expr | None
    zero_sum: frozenset = frozenset()
    text: str = ""              # the contribution in the names of the rows ("x.T @ d_t1")


def backprop_table(gradfn, *args, **kwargs) -> Table:
    """The backprop table of `gradfn` (a sb.grad / sb.value_and_grad function) specialised for `args`.

    With no arguments, the last specialisation (as `.source` and `.export` do).
    """
    if args or kwargs or gradfn._last is None:
        compiled = gradfn.specialise(*args, **kwargs)  # rejects what the compiler rejects, with its message
    else:
        compiled = gradfn._last
    with distribute(False):
        return _Builder(compiled).build()


class _Builder:
    def __init__(self, compiled):
        self.compiled = compiled
        self.specs = compiled.specs
        self.graph = stages.build(compiled.fn, compiled.specs, compiled.backend, "forward").graph
        self.writer = Writer(NumpyPrinter, taken=[p.name for p in self.graph.params])
        self.names = {p: p.name for p in self.graph.params}
        self.writer.names.update(self.names)
        self.symbols: dict = {}
        self.grad_names: dict = {}

    # names ---------------------------------------------------------------------
    def name(self, v) -> str:
        if v not in self.names:
            self.names[v] = self.writer.name(v)
        return self.names[v]

    def text(self, v) -> str:
        """How an input is written: its name, or the number a scalar constant holds."""
        if v.node is not None and v.node.prim is Fill and v.shape == ():
            return MathText().doprint(sympy.nsimplify(v.node.attrs["value"]))
        return self.name(v)

    def symbol(self, v) -> sympy.Expr:
        if v.node is not None and v.node.prim is Fill:
            return sympy.nsimplify(v.node.attrs["value"])
        name = self.name(v)
        if name not in self.symbols:
            self.symbols[name] = sympy.Symbol(name, real=True)
        return self.symbols[name]

    def grad_name(self, v) -> str:
        if v not in self.grad_names:
            self.grad_names[v] = self.writer.fresh("d_" + self.name(v))
        return self.grad_names[v]

    # forward -------------------------------------------------------------------
    def build(self) -> Table:
        graph, compiled = self.graph, self.compiled
        wrt_names = tuple(self.specs[i].name for i in compiled.wrt)
        shown = [s.describe() for s in self.specs]
        title = f"{compiled.fn.__name__}({', '.join(shown)}): gradient with respect to {', '.join(wrt_names)}"
        table = Table(title, wrt_names)
        nodes = [n for n in graph.nodes if not (n.prim is Fill and n.outputs[0].shape == ())]
        for index, node in enumerate(nodes, 1):
            table.forward.append(self.step(index, node))
        params = {p.name: p for p in graph.params}
        wrt_values = [params[n] for n in wrt_names]
        totals = self.backward(table, nodes, wrt_values)
        for name, p in zip(wrt_names, wrt_values):
            part = totals.get(p)
            if part is None:
                table.gradients.append((name, None, "0", "0"))
            else:
                table.gradients.append((name, self.grad_name(p), part.text, self.closed_text(part.closed)))
        table.symbols = dict(self.symbols)
        return table

    def kernel_bodies(self, node):
        """Each output's body over the input names (the forward output not substituted)."""
        rename = {arg(j): self.symbol(v) for j, v in enumerate(node.inputs)}
        return tuple(b.xreplace(rename) for b in expand(node.attrs["program"], node.attrs["outs"]))

    def step(self, index, node) -> Step:
        outs = tuple(self.name(v) for v in node.outputs)
        ins = tuple(self.text(v) for v in node.inputs)
        if node.prim is Kernel:
            bodies = self.kernel_bodies(node)
            operation = "; ".join(f"{o} = {math_text(b)}" for o, b in zip(outs, bodies))
            return Step(index, node.loc, outs, operation, "elementwise", bodies, ins)
        kind = node.prim.describe(node)
        return Step(index, node.loc, outs, f"{outs[0]} = {self.operation(node, ins)}", kind, (), ins)

    def operation(self, node, ins) -> str:
        if "axes" in node.attrs and isinstance(node.prim, SoftmaxFamily):
            axes = axis_text(node.attrs["axes"], node.inputs[0].ndim)
            extra = ", ".join(self.name(v) for v in node.outputs[1:])
            return f"{node.prim.name}({', '.join(ins + ((axes,) if axes else ()))})   (keeps {extra})"
        try:
            text = numpy_rules.write(node, list(ins), [self.name(v) for v in node.outputs])
        except Exception:  # a primitive that needs the writer's state: describe it instead
            text = None
        if isinstance(text, str):
            return text
        return f"{node.prim.describe(node)}({', '.join(ins)})"

    # backward ------------------------------------------------------------------
    def backward(self, table, nodes, wrt_values):
        graph = self.graph
        live = depends_on(graph, wrt_values)
        parts: dict = {}
        totals: dict = {}
        if graph.result in live:
            parts[graph.result] = [_Part(sympy.S.One)]
        seed = graph.result
        wrt_set = set(wrt_values)
        for step, node in reversed(list(zip(table.forward, nodes))):
            gs = [self.total(parts.pop(v, []), v) for v in node.outputs]
            for v, g in zip(node.outputs, gs):
                if g is not None:
                    totals[v] = g
            if all(g is None for g in gs):
                continue
            for i, v in enumerate(node.inputs):
                if v not in live or (v.dtype.kind not in "fc" and v not in wrt_set):
                    continue
                for row, part in self.rows(step, node, gs, i, seed):
                    if part is not None:
                        row.accumulates = bool(parts.get(v))
                        parts.setdefault(v, []).append(part)
                    table.backward.append(row)
        for p in wrt_values:
            g = self.total(parts.pop(p, []), p)
            if g is not None:
                totals[p] = g
        return totals

    def total(self, contributions, v):
        """The sum of the contributions to v's gradient, or None when nothing reaches it."""
        if not contributions:
            return None
        if any(c.closed is None for c in contributions):
            closed = None
        else:
            closed = sympy.Add(*[c.closed for c in contributions])
            if len(math_text(closed)) > CLOSED_FORM_LIMIT:
                closed = None
        zero_sum = frozenset.intersection(*[c.zero_sum for c in contributions])
        text = " + ".join(c.text for c in contributions)
        return _Part(closed if closed is not None else sympy.Symbol(self.grad_name(v), real=True), zero_sum, text)

    def closed_text(self, expr):
        text = math_text(expr)
        return None if expr.is_Symbol and expr.name.startswith("d_") else text

    def rows(self, step, node, gs, i, seed):
        """(Adjoint row, contribution or None) for the gradient node sends to input i."""
        v = node.inputs[i]
        if node.prim is Kernel:
            yield from self.kernel_rows(step, node, gs, i, seed)
            return
        k = next(k for k, g in enumerate(gs) if g is not None)
        g, out = gs[k], node.outputs[k]
        residual = self.grad_name(out)
        rule = adjoint_rule(node, i, [self.text(x) for x in node.inputs], [self.name(x) for x in node.outputs])
        local = rule("g")
        contribution = rule(residual)
        closed, zero_sum = None, frozenset()
        if node.prim is Sum and (node.attrs["keepdims"] or out.shape == () or g.closed.is_Number):
            closed = g.closed  # broadcasting g is what NumPy does to it anyway
        row = Adjoint(step.index, node.loc, self.name(out), self.text(v), residual, out is seed and g.closed == 1,
                      None, local, self.grad_name(v), contribution)
        notes = [NOTES.get(node.prim.name, "").format(*(self.name(o) for o in node.outputs))]
        if node.prim in (LogSoftmax, Softmax):
            zero_sum = frozenset(node.attrs["axes"])
            notes.append(f"sums to zero along {_axes_words(zero_sum)}")
        row.note = "; ".join(n for n in notes if n)
        if closed is not None and closed != sympy.Symbol(residual, real=True):
            row.closed = self.closed_text(closed)
        yield row, _Part(closed, zero_sum, contribution)

    def kernel_rows(self, step, node, gs, i, seed):
        v = node.inputs[i]
        bodies = [recognise(b) for b in expand(node.attrs["program"], node.attrs["outs"])]
        # like the compiler: derivatives in terms of the forward outputs (tanh' = 1 - h**2)
        to_output = {b: out_symbol(k) for k, b in enumerate(bodies) if not b.is_Symbol}
        rename = {arg(j): self.symbol(x) for j, x in enumerate(node.inputs)}
        rename.update({out_symbol(k): self.symbol(o) for k, o in enumerate(node.outputs)})
        shape, to_shape = node.attrs["shape"], v.shape
        axes = summed_axes(shape, to_shape) if shape != to_shape else frozenset()
        for k, (body, g) in enumerate(zip(bodies, gs)):
            if g is None:
                continue
            out = node.outputs[k]
            local = local_derivative(body, arg(i)).xreplace(to_output).xreplace(rename)
            printed = math_text(local)
            residual = self.grad_name(out)
            row = Adjoint(step.index, node.loc, self.name(out), self.text(v), residual,
                          out is seed and g.closed == 1, local, printed, self.grad_name(v), "")
            if local == 0:
                row.contribution = "0"
                row.note = f"no gradient reaches {row.input} through this operation"
                yield row, None
                continue
            contribution = times(residual, local, printed)
            if axes:
                contribution = sum_to_text(_atom(contribution), shape, to_shape)
            row.contribution = contribution
            if axes and local.is_Number and axes <= g.zero_sum:
                row.note = f"0: {residual} sums to zero along {_axes_words(axes)}, so no gradient reaches {row.input}"
                yield row, None
                continue
            closed = g.closed * local
            if axes:
                closed = (closed * _count(shape, axes)) if closed.is_Number else Summed(
                    closed, sympy.Tuple(*shape), sympy.Tuple(*to_shape))
            keeps_zero_sum = g.zero_sum if (local.is_Number and not axes) else frozenset()
            text = math_text(closed)
            if len(text) <= CLOSED_FORM_LIMIT and g.closed != sympy.Symbol(residual, real=True):
                row.closed = text
            yield row, _Part(closed if len(text) <= CLOSED_FORM_LIMIT else None, keeps_zero_sum, contribution)


def _count(shape, axes):
    n = 1
    for a in axes:
        n *= shape[a]
    return n


def _axes_words(axes):
    axes = sorted(axes)
    return f"axis {axes[0]}" if len(axes) == 1 else f"axes {tuple(axes)}"


# ---- adjoint rules of the non-elementwise primitives, as text --------------------
# Each mirrors the primitive's adjoint (symbolic reverse mode builds the real IR);
# `g` is the incoming gradient, x the input names, y the output names.

RULES: dict = {}
#: what a reader needs to know about a rule, printed after the gradient
NOTES = {
    "max": "ties share the gradient",
    "min": "ties share the gradient",
    "index": "zeros elsewhere",
    "logsumexp": "{1}/{2} is the softmax, from the forward exponentials",
    "log_softmax": "{1}/{2} is the softmax, from the forward exponentials",
}


def rule(name):
    def register(fn):
        RULES[name] = fn
        return fn
    return register


def adjoint_rule(node, i, x, y):
    """A function g -> the text of the gradient node sends to input i."""
    custom = getattr(node.prim, "explain_adjoint", None)
    if custom is not None:
        return lambda g: custom(node, i, x, y, g)
    fn = RULES.get(node.prim.name)
    if fn is None:
        return lambda g: f"adjoint of {node.prim.describe(node)} applied to {g}"
    return lambda g: fn(node, i, x, y, g)


def _transposed(name, ndim):
    return f"{name}.T" if ndim == 2 else f"{name}.swapaxes(-1, -2)"


@rule("matmul")
def _matmul(node, i, x, y, g):
    a, b = node.inputs
    if a.ndim == 1 and b.ndim == 1:
        return f"{g} * {x[1 - i]}"
    if a.ndim == 2 and b.ndim == 1:
        return f"outer({g}, {x[1]})" if i == 0 else f"{x[0]}.T @ {g}"
    if a.ndim == 1 and b.ndim == 2:
        return f"{x[1]} @ {g}" if i == 0 else f"outer({x[0]}, {g})"
    if a.ndim == 2 and b.ndim == 2:
        return f"{g} @ {x[1]}.T" if i == 0 else f"{x[0]}.T @ {g}"
    text = f"{g} @ {_transposed(x[1], b.ndim)}" if i == 0 else f"{_transposed(x[0], a.ndim)} @ {g}"
    return f"{text}, summed to {node.inputs[i].shape}"


@rule("outer")
def _outer(node, i, x, y, g):
    return f"{g} @ {x[1]}" if i == 0 else f"{x[0]} @ {g}"


def _keepdims_text(node, g):
    """g with the reduced axes put back (size 1), so that it broadcasts against the input."""
    if node.attrs["keepdims"] or node.outputs[0].shape == ():
        return g
    ndim = node.inputs[0].ndim
    key = tuple(None if a in node.attrs["axes"] else slice(None) for a in range(ndim))
    return _numpy_text(Index, [_tmp_value(node.outputs[0].shape)], {"index": key, "shape": ()}, [g])


@rule("sum")
def _sum(node, i, x, y, g):
    return f"broadcast {_keepdims_text(node, g)} to {node.inputs[0].shape}"


@rule("max")
@rule("min")
def _extremum(node, i, x, y, g):
    m = y[0] if node.attrs["keepdims"] else _keepdims_text(node, y[0])
    return f"where({x[0]} == {m}, {_keepdims_text(node, g)}/ties, 0)"


@rule("reshape")
def _reshape(node, i, x, y, g):
    return _numpy_text(Reshape, [_tmp_value(node.outputs[0].shape)], {"shape": node.inputs[0].shape}, [g])


@rule("transpose")
def _transpose(node, i, x, y, g):
    perm = node.attrs["perm"]
    inverse = [0] * len(perm)
    for j, p in enumerate(perm):
        inverse[p] = j
    return _numpy_text(Transpose, [_tmp_value(node.outputs[0].shape)], {"perm": tuple(inverse)}, [g])


@rule("broadcast_to")
def _broadcast_to(node, i, x, y, g):
    return sum_to_text(g, node.outputs[0].shape, node.inputs[0].shape)


@rule("sum_to")
def _sum_to(node, i, x, y, g):
    return f"broadcast {g} to {node.inputs[0].shape}"


@rule("concatenate")
def _concatenate(node, i, x, y, g):
    axis = node.attrs["axis"]
    start = sum(v.shape[axis] for v in node.inputs[:i])
    key = (slice(None),) * axis + (slice(start, start + node.inputs[i].shape[axis]),)
    return _numpy_text(Index, [_tmp_value(node.outputs[0].shape)], {"index": key, "shape": ()}, [g])


@rule("index")
def _index(node, i, x, y, g):
    key = _numpy_text(Index, [node.inputs[0]], {"index": node.attrs["index"], "shape": ()}, [""])
    return f"{g} at {key}"


@rule("scatter_add")
def _scatter_add(node, i, x, y, g):
    return _numpy_text(Index, [node.outputs[0]], {"index": node.attrs["indexes"][i], "shape": ()}, [g])


def _softmax_text(node, y):
    return f"{y[1]}/{y[2]}"


@rule("logsumexp")
def _logsumexp(node, i, x, y, g):
    return f"{_keepdims_text(node, g)} * {_softmax_text(node, y)}"


@rule("log_softmax")
def _log_softmax(node, i, x, y, g):
    axes = node.attrs["axes"]
    total = f"{g}.sum({axis_text(axes, 0) or 'axis=' + str(axes)}, keepdims=True)"
    return f"{g} - {_softmax_text(node, y)} * {total}"


@rule("softmax")
def _softmax(node, i, x, y, g):
    axes = node.attrs["axes"]
    return f"{y[0]} * ({g} - ({g}*{y[0]}).sum({axis_text(axes, 0) or 'axis=' + str(axes)}, keepdims=True))"


# ---- the table as text ---------------------------------------------------------

def _columns(rows, header):
    widths = [max(len(str(r[c])) for r in [header] + rows) for c in range(len(header))]
    lines = []
    for r in [header] + rows:
        cells = [str(c).ljust(w) for c, w in zip(r, widths)]
        lines.append("  " + "  ".join(cells).rstrip())
    return lines


def _differs(a: str, b: str) -> bool:
    return a.replace(" ", "") != b.replace(" ", "")


def render(table: Table) -> str:
    lines = [table.title, "", "forward pass"]
    rows, last = [], None
    for s in table.forward:
        where_ = s.loc.short() if s.loc and s.loc.line else ""
        text = s.loc.text.strip() if s.loc and s.loc.text and s.loc != last else ('"' if s.loc == last else "")
        last = s.loc
        rows.append([s.index, where_, text, s.operation, s.kind])
    lines += _columns(rows, ["#", "line", "source", "operation", "kind"]) if rows else ["  (none: the loss is a constant)"]
    lines += ["", "backward pass, last operation first: gradient = residual * local derivative"]
    rows = []
    for a in table.backward:
        residual = f"{a.residual} = 1" if a.seed else a.residual
        local = f"d{a.output}/d{a.input} = {a.rule}" if a.local is not None else f"d{a.output}/d{a.input}: {a.rule}"
        gradient = f"{a.gradient} {'+=' if a.accumulates else '='} {a.contribution}"
        if a.closed and _differs(a.closed, a.contribution):
            gradient += f" = {a.closed}"
        if a.note:
            gradient += f"   ({a.note})"
        rows.append([a.step, a.loc.short() if a.loc and a.loc.line else "", residual, local, gradient])
    lines += _columns(rows, ["#", "line", "residual", "local derivative", "gradient"]) if rows else \
        ["  (none: no gradient reaches the parameters)"]
    lines += ["", "gradients"]
    for param, name, text, closed in table.gradients:
        if name is None:
            lines.append(f"  d_{param} = 0   (the loss does not depend on {param})")
        else:
            lines.append(f"  {name} = {text}" + (f" = {closed}" if closed and _differs(closed, text) else ""))
    return "\n".join(lines) + "\n"


def explain(gradfn, *args, **kwargs) -> str:
    """The backprop table of `gradfn` specialised for `args`, as text (GradFunction.explain)."""
    return render(backprop_table(gradfn, *args, **kwargs))
