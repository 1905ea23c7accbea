"""The backprop table, as taught: each forward operation, then each adjoint step in reverse.

The table is read off the graph value_and_grad builds (the `gradient` stages of pipeline/stages.py):
reverse mode records, for each forward node, the gradients its adjoint read and
returned and the backward nodes it appended (`transforms.reverse.AdjointStep`),
and each backward row prints those nodes with the user's names. A row reads
`gradient = residual * local derivative`: the residual is the incoming gradient
of the operation's output (`d_h`); for an elementwise operation the local
derivative is the emitted adjoint body's derivative with respect to that
gradient (the body is linear in it, and written in terms of the forward output
as the compiler writes it: `tanh' = 1 - h**2`); for a matrix or shape operation
it is the emitted adjoint with `g` for the residual (`np.dot(g, W.T)`). Where a
rule's result does not read its residual (a constant residual the rule folded
away, or a product the forward pass already computes), the row shows the same
rule applied to a stand-in `g` in a scratch graph, then the value emitted.
`backprop_table` gives the rows as data (SymPy expressions over the user's
names); `explain` prints them.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

import sympy
from sympy.core.parameters import distribute
from sympy.printing.precedence import PRECEDENCE

from . import regions_report
from .backends import get as get_backend
from .backends.numpy import rules as numpy_rules
from .backends.numpy.printer import NumpyPrinter
from .backends.numpy.writer import writing
from .errors import Loc
from .ir import Graph, Node, Value, building
from .pipeline import stages
from .primitives.custom import CUSTOM_CALLS
from .primitives.elementwise import Fill, Kernel, arg, expand, fill_value, number
from .primitives.control import Region, While
from .primitives.reduce import axis_text
from .primitives import scalar
from .primitives.shape import BroadcastTo, Reshape, SumTo, Transpose
from .transforms.reverse import AdjointStep

#: closed forms longer than this are not printed; later rows then use the gradient's name
CLOSED_FORM_LIMIT = 72


# ---- printing with the user's names ---------------------------------------------

def _numpy_text(node, args, out):
    """What the NumPy backend prints for `node` applied to the printed `args` (an expression, or lines).

    Every piece of NumPy text in this module comes from here.
    """
    if node.prim is BroadcastTo and out is not None:  # a sum's adjoint: np.broadcast_to(g, (4,))
        args = [_scalar_reshape_elided(node, args[0])]
    return numpy_rules.write(node, list(args), out)


def _scalar_reshape_elided(node, text):
    """`g` for `np.reshape(g, (1,))` when g is a number: the generated code makes it (1,) for
    np.broadcast_to, which a reader does not need to see (np.broadcast_to takes the number)."""
    src = node.inputs[0].node
    if src is not None and src.prim is Reshape and src.inputs[0].ndim == 0:
        match = re.fullmatch(r"\(?np\.reshape\((.*), \((?:1, )*1?,?\)\)\)?", text)
        if match:
            return _atom(match.group(1))
    return text


class Summed(sympy.Function):
    """sum_to(x, shape) in a closed form: args are (x, from_shape, to_shape) as Tuples."""

    is_real = True


class MathText(NumpyPrinter):
    """Kernel bodies as a person writes them: `tanh(z)`, `1 - h**2`, `where(x > 0, ...)`."""

    numpy_code = False

    def text(self, function):
        return function.explain

    def __init__(self, names=None):
        super().__init__(names or {})

    def pow(self, base, e):  # the math, not the fastest NumPy spelling
        b = self.parenthesize(base, PRECEDENCE["Pow"], strict=True)
        return f"{b}**{self.parenthesize(e, PRECEDENCE['Pow'], strict=True)}"

    def where(self, c, a, b):
        cond = self._print(c)
        if isinstance(c, scalar.BOOL_FUNCTIONS) and cond.startswith("(") and cond.endswith(")"):
            cond = cond[1:-1]  # where(s > 0.5, ...), not where((s > 0.5), ...)
        return f"{self.text(scalar.FUNCTIONS['where'])}({cond}, {self._print(a)}, {self._print(b)})"

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


def sum_to_text(x: str, shape, to_shape) -> str:
    """`x` summed down to `to_shape` as the generated code writes it: in closed forms, and where the emitted
    sum was folded into a constant or dropped (it is zero)."""
    return _numpy_text(Node(SumTo, [Value(shape, "float64")], {"shape": tuple(to_shape)}, None), [x], None)


def _encloses(text: str) -> bool:
    """Whether the bracket opening `text` closes at its end: `(x == m)`."""
    depth = 0
    for i, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0:
            return i == len(text) - 1
    return False


def _atom(text: str) -> str:
    """`text` as an operand of a method call or an operator: `d_h`, `W.T`, or `(d_h*(1 - h**2))`."""
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError:
        return f"({text})"
    if isinstance(tree, (ast.Name, ast.Attribute, ast.Call, ast.Subscript)) or (
            isinstance(tree, ast.Constant) and not text.startswith("-")):
        return text
    return text if text.startswith("(") and _encloses(text) else f"({text})"


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


def _tidy(expr):
    """Numbers a float residual was divided out of, as they were written: 2.0000000000000004 -> 2."""
    floats = {}
    for f in expr.atoms(sympy.Float):
        short = float(f"{float(f):.12g}")
        if len(repr(short)) <= 8 and short != float(f):
            floats[f] = number(short)
    return expr.xreplace(floats) if floats else expr


def _divided(expr, c):
    """`expr / c` for a number c: written as is (2*(y_hat - y)) or with 1/c distributed over a sum
    (-8*(-y/(8*s) + ...) is y/s - ...), whichever is shorter."""
    ways = []
    for spread in (False, True):
        with distribute(spread):
            ways.append(_tidy(sympy.Mul(expr, 1 / c)))
    return min(ways, key=lambda e: len(math_text(e)))


def _axes_words(axes):
    axes = sorted(axes)
    return f"axis {axes[0]}" if len(axes) == 1 else f"axes {tuple(axes)}"


def _size(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _stripped(shape):
    shape = tuple(shape)
    while shape and shape[0] == 1:
        shape = shape[1:]
    return shape


def operation_text(node, ins, outs) -> str:
    """A matrix, shape or composite operation applied to the printed `ins`, as the NumPy backend writes
    it (`np.dot(x, W1)`); `outs` name its outputs. Kernels are written by their bodies (math_text)."""
    ins, outs = tuple(ins), tuple(outs)
    if node.prim.rewritten_away:  # gone before code is generated (sb.stop_gradient): written as the model does
        return node.prim.written(node, list(ins))
    text = _numpy_text(node, ins, list(outs))
    if isinstance(text, str):
        return text
    # written as several statements (the softmax family): its name, and the values it keeps
    axes = axis_text(node.attrs["axes"], node.inputs[0].ndim) if "axes" in node.attrs else ""
    keeps = f"   (keeps {', '.join(outs[1:])})" if len(outs) > 1 else ""
    return f"{node.prim.describe(node)}({', '.join(ins + ((axes,) if axes else ()))}){keeps}"


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
    rule: str                   # the local derivative as printed: "x", or "np.dot(g, W.T)" for a rule
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
    """One contribution to a gradient: its closed form (None: refer to it by name) and its text."""

    closed: sympy.Expr | None
    text: str = ""              # the contribution in the names of the rows ("h.T @ d_t1")


def backprop_table(gradfn, *args, **kwargs) -> Table:
    """The backprop table of `gradfn` (a sb.grad / sb.value_and_grad function) specialised for `args`.

    With no arguments, the last specialisation (as `.source` and `.export` do).
    """
    if args or kwargs or gradfn._last is None:
        compiled = gradfn.specialise(*args, **kwargs)  # rejects what the compiler rejects, with its message
    else:
        compiled = gradfn._last
    program = stages.build(compiled.fn, compiled.specs, compiled.backend, "gradient", wrt=compiled.wrt,
                           single=compiled.single, has_aux=compiled.has_aux, trees=compiled.trees)
    graph, forward_nodes, wrt_values, grads = program.graph, program.forward_nodes, program.wrt_values, program.grads
    with distribute(False), writing(NumpyPrinter, graph.params) as writer:
        return _Builder(compiled, graph, forward_nodes, wrt_values, grads, writer).build()


class _Builder:
    def __init__(self, compiled, graph, forward_nodes, wrt_values, grads, writer):
        self.compiled = compiled
        self.specs = compiled.specs
        self.graph = graph
        self.forward_nodes = forward_nodes
        self.wrt_values = wrt_values
        self.writer = writer
        self.symbols: dict = {}
        self.grad_names: dict = {}
        self.opaque: dict = {}          # symbol -> (value, leaves): a backward node printed as NumPy text
        self.opaque_symbols: dict = {}
        self.result = graph.result      # what the backward pass differentiates
        self.cotangent = None           # its incoming gradient where that is an argument, not d_loss = 1

    # names ---------------------------------------------------------------------
    def name(self, v) -> str:
        return self.writer.name(v)

    def text(self, v) -> str:
        """How an input is written: its name, or the number a scalar constant holds."""
        if v.node is not None and v.node.prim is Fill and v.shape == ():
            return math_text(sympy.nsimplify(v.node.attrs["value"]))
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

    def n_outputs(self, node) -> int:
        """The outputs the model computes: the adjoint of a kernel appends the residuals it keeps."""
        step = self.graph.adjoints.get(node)
        return len(step.gs) if step is not None else len(node.outputs)

    # emitted values as expressions -----------------------------------------------
    def expr(self, v, leaves) -> sympy.Expr:
        """`v` over the user's names, as SymPy: kernels by their bodies, any other node as a symbol
        standing for its NumPy text (printed by `math`).

        `leaves` maps values (the incoming gradients) to the symbols they are written as.
        """
        if v in leaves:
            return leaves[v]
        c = fill_value(v)
        if c is not None:
            return number(c)
        node = v.node
        if node is None:
            return self.symbol(v)
        k = node.outputs.index(v)
        if node in self.forward_nodes:
            if node.prim is Kernel and k >= self.n_outputs(node):  # a residual kept for the backward pass
                return self.body(node, k, leaves)
            return self.symbol(v)
        if node.prim is Kernel:
            return self.body(node, k, leaves)
        return self.opaque_expr(v, leaves)

    def opaque_expr(self, v, leaves) -> sympy.Expr:
        """A symbol standing for `v`'s NumPy text, printed by `math`."""
        key = (v, id(leaves))
        if key not in self.opaque_symbols:
            # named to sort after the user's names: `e*g.sum(axis=1, keepdims=True)/s`
            s = sympy.Symbol(f"~{len(self.opaque):05d}", real=True)
            self.opaque_symbols[key] = s
            self.opaque[s] = (v, leaves)
        return self.opaque_symbols[key]

    def body(self, node, k, leaves):
        body = expand(node.attrs["program"], node.attrs["outs"])[k]
        return body.xreplace({arg(j): self.expr(u, leaves) for j, u in enumerate(node.inputs)})

    def math(self, expr, naming=None) -> str:
        """`expr` printed, the symbols in `naming` written as it says (`g` for a residual)."""
        naming = naming or {}
        names = {}
        for s in expr.free_symbols:
            if s in naming:
                names[s] = naming[s]
            elif s in self.opaque:
                names[s] = self.node_text(*self.opaque[s], naming)
        return MathText(names).doprint(expr)

    def node_text(self, v, leaves, naming) -> str:
        node = v.node
        args = [_atom(self.math(self.expr(u, leaves), naming)) for u in node.inputs]
        text = _numpy_text(node, args, ["_"] * len(node.outputs))
        if not isinstance(text, str):  # a primitive written as statements: the scatter-add of index adjoints
            text = self.statements_text(text)
        return text

    @staticmethod
    def statements_text(lines):
        """`g at [2, 3]` for the lines `t = np.zeros(...)`, `t[2, 3] += g` of a scatter-add."""
        parts = []
        for line in lines:
            target, sep, value = line.partition(" += ")
            if sep:
                parts.append(f"{value} at {target[target.index('['):]}")
        return " + ".join(parts) if parts else "; ".join(lines)

    # forward -------------------------------------------------------------------
    def build(self) -> Table:
        graph, compiled = self.graph, self.compiled
        wrt_names = tuple(self.specs[i].name for i in compiled.wrt)
        shown = [s.describe() for s in self.specs]
        title = f"{compiled.fn.__name__}({', '.join(shown)}): gradient with respect to {', '.join(wrt_names)}"
        table = Table(title, wrt_names)
        nodes = [n for n in graph.nodes
                 if n in self.forward_nodes and not (n.prim is Fill and n.outputs[0].shape == ())]
        self.steps = {}
        for index, node in enumerate(nodes, 1):
            step = self.step(index, node)
            table.forward.append(step)
            self.steps[node] = step
        totals = self.backward(table)
        for name, p in zip(wrt_names, self.wrt_values):
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
        bodies = expand(node.attrs["program"], node.attrs["outs"])[:self.n_outputs(node)]
        return tuple(b.xreplace(rename) for b in bodies)

    def step(self, index, node) -> Step:
        outs = tuple(self.name(v) for v in node.outputs[:self.n_outputs(node)])
        ins = tuple(self.text(v) for v in node.inputs)
        if node.prim is Kernel:
            for v in node.outputs[:len(outs)]:
                self.symbol(v)  # the symbols its local derivatives are written in
            bodies = self.kernel_bodies(node)
            operation = "; ".join(f"{o} = {math_text(b)}" for o, b in zip(outs, bodies))
            return Step(index, node.loc, outs, operation, "elementwise", bodies, ins)
        kind = node.prim.describe(node)
        if isinstance(node.prim, Region):  # its body's operations are not rows: the control-flow section says what ran
            made = [self.name(v) for v in regions_report.results(node)]
            reads = [self.text(v) for v in dict.fromkeys(node.inputs)]
            operation = f"{', '.join(made) or '(nothing)'} = {kind} at line {node.loc.line} on {', '.join(reads)}"
            return Step(index, node.loc, outs, operation, kind, (), ins)
        return Step(index, node.loc, outs, f"{outs[0]} = {self.operation(node, ins, outs)}", kind, (), ins)

    def operation(self, node, ins, outs) -> str:
        return operation_text(node, ins, outs)

    # backward ------------------------------------------------------------------
    def backward(self, table):
        graph = self.graph
        parts: dict = {}
        totals: dict = {}
        seed = self.result
        if self.cotangent is None:
            parts[seed] = [_Part(sympy.S.One)]
        else:  # sb.vjp, a Jacobian by reverse mode: the residual of the result is the cotangent argument
            name = self.name(self.cotangent)
            self.grad_names[seed] = name
            parts[seed] = [_Part(sympy.Symbol(name, real=True), name)]
        for node, adjoint in graph.adjoints.items():
            gs = [(self.total(parts.pop(v, []), v) or _Part(sympy.Symbol(self.grad_name(v), real=True),
                                                           self.grad_name(v))) if g is not None else None
                  for v, g in zip(node.outputs, adjoint.gs)]
            for v, g in zip(node.outputs, gs):
                if g is not None:
                    totals[v] = g
            step = self.steps[node]
            for i, v in enumerate(node.inputs):
                if not adjoint.wants[i] or (node.prim in CUSTOM_CALLS and i == len(node.inputs) - 1):
                    continue  # (a custom rule's helper value is not differentiated: no row for it)
                rows = self.kernel_rows if node.prim is Kernel else \
                    self.region_rows if isinstance(node.prim, Region) else self.rule_rows
                for row, part in rows(step, adjoint, gs, i, seed):
                    if part is not None:
                        row.accumulates = bool(parts.get(v))
                        parts.setdefault(v, []).append(part)
                    table.backward.append(row)
        for p in self.wrt_values:
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
            if len(self.math(closed)) > CLOSED_FORM_LIMIT:
                closed = None
        text = " + ".join(c.text for c in contributions)
        return _Part(closed if closed is not None else sympy.Symbol(self.grad_name(v), real=True), text)

    def closed_text(self, expr):
        text = self.math(expr)
        return None if expr.is_Symbol and expr.name.startswith("d_") else text

    def rule_rows(self, step, adjoint, gs, i, seed):
        """The row of a matrix, shape or reduction adjoint: its emitted nodes, printed with `g` and with the residual."""
        node = adjoint.node
        v, r = node.inputs[i], adjoint.results[i]
        k = next(k for k, g in enumerate(adjoint.gs) if g is not None)
        g, out = adjoint.gs[k], node.outputs[k]
        residual = self.grad_name(out)
        emitted = adjoint
        if r is not None and not any(self.reads(r, x) for x in adjoint.gs if x is not None):
            # the gradient is a number or a forward value: the residual was a constant the rule folded away
            # (the sum making the loss), or the product it built is one the forward pass computes. The rule
            # applied to a stand-in for the residual shows what it does; the emitted value follows it.
            emitted = self.stand_in(adjoint)
        # one expression, printed twice: with `g` for the residual, and with the residual's name
        leaves, placeholder = {}, {}
        for j, x in enumerate(emitted.gs):
            if x is not None:
                leaves[x] = sympy.Symbol(self.grad_name(node.outputs[j]), real=True)
                placeholder[leaves[x]] = "g" if j == k else f"g{j}"
        shown = emitted.results[i]
        body = self.expr(shown, leaves) if shown is not None else sympy.S.Zero
        local, contribution = self.math(body, placeholder), self.math(body)
        row = Adjoint(step.index, node.loc, self.name(out), self.text(v), residual,
                      out is seed and gs[k].closed == 1, None, local, self.grad_name(v), contribution)
        notes = [node.prim.explain_text(node, [self.name(o) for o in node.outputs])]
        if r is None or fill_value(r) == 0:
            notes.append(f"no gradient reaches {row.input}")
            row.note = "; ".join(n for n in notes if n)
            yield row, None
            return
        if r.zero_sum_axes:
            notes.append(f"sums to zero along {_axes_words(r.zero_sum_axes)}")
        row.note = "; ".join(n for n in notes if n)
        closed = None
        if fill_value(r) is not None:
            closed = number(fill_value(r))
        elif emitted is not adjoint:
            closed = self.expr(r, {})
        elif self.broadcasts(r, g):  # g repeated: as an elementwise expression, g itself
            closed = gs[k].closed
        if closed is not None and len(self.math(closed)) > CLOSED_FORM_LIMIT:
            closed = None
        if closed is not None and closed != sympy.Symbol(residual, real=True):
            row.closed = self.closed_text(closed)
        yield row, _Part(closed, contribution)

    def region_rows(self, step, adjoint, gs, i, seed):
        """The row of an `if` or `while`: its backward region (the branch taken replayed, or the iterations
        run backward) sends a gradient to the input; the generated code's backward section spells it out."""
        node = adjoint.node
        v, r = node.inputs[i], adjoint.results[i]
        outs = [k for k, g in enumerate(adjoint.gs) if g is not None]
        residual = ", ".join(self.grad_name(node.outputs[k]) for k in outs)
        output = ", ".join(self.name(node.outputs[k]) for k in outs)
        where = f"the backward pass of the {node.prim.describe(node)} at line {node.loc.line}"
        row = Adjoint(step.index, node.loc, output, self.text(v), residual, False, None,
                      node.prim.explain_note, self.grad_name(v), "")
        if r is None or fill_value(r) == 0:
            row.contribution, row.note = "0", f"no gradient reaches {row.input}"
            yield row, None
            return
        if node.prim is While and i < node.attrs["carried"]:  # an initial value: which carried name it starts
            where += f", to the initial {self.name(node.outputs[i])}"
        row.contribution = f"({where})"
        yield row, _Part(None, row.contribution)

    def reads(self, r, g) -> bool:
        """Whether the backward value `r` is computed from `g`."""
        seen, stack = set(), [r]
        while stack:
            x = stack.pop()
            if x is g:
                return True
            if x in seen or x.node is None or x.node in self.forward_nodes:
                continue
            seen.add(x)
            stack.extend(x.node.inputs)
        return False

    @staticmethod
    def broadcasts(r, g) -> bool:
        """Whether `r` is `g` broadcast, as NumPy would broadcast it (leading axes of size 1 added)."""
        while r is not g:
            node = r.node
            if node is None or node.prim not in (BroadcastTo, Reshape):
                return False
            if node.prim is Reshape and (r.ndim < node.inputs[0].ndim or
                                         _stripped(r.shape) != _stripped(node.inputs[0].shape)):
                return False
            r = node.inputs[0]
        return True

    @staticmethod
    def stand_in(adjoint):
        """The node's adjoint applied, in a scratch graph, to stand-ins for its incoming gradients."""
        gs = []
        for g in adjoint.gs:
            x = None
            if g is not None:
                x = Value(g.shape, g.dtype)
                x.weak, x.zero_sum_axes = g.weak, g.zero_sum_axes
            gs.append(x)
        scratch = Graph()
        with building(scratch):
            results = adjoint.node.prim.adjoint(adjoint.node, gs, list(adjoint.wants))
        return AdjointStep(adjoint.node, tuple(gs), adjoint.wants, tuple(results), list(scratch.nodes))

    def kernel_rows(self, step, adjoint, gs, i, seed):
        """One row per incoming gradient: the emitted adjoint body's derivative with respect to it."""
        node = adjoint.node
        v, r = node.inputs[i], adjoint.results[i]
        shape, to_shape = node.attrs["shape"], v.shape
        # the emitted gradient: a kernel (or the residual itself) over the kernel's shape, summed to the input's
        summed = None
        inner = r
        if r is not None and r.node is not None and r.node.prim is SumTo and r.node not in self.forward_nodes \
                and not any(r is g for g in adjoint.gs):
            summed, inner = r.node, r.node.inputs[0]
        elif r is None:
            inner = self.zero_sum_gradient(adjoint)
        count = _size(shape) // max(_size(to_shape), 1)
        # a constant gradient summed to the input's shape while the graph was built
        folded = summed is None and r is not None and r.shape != shape and fill_value(r) is not None
        # the incoming gradients as symbols; a constant one was folded into the body as its number
        symbols = {g: sympy.Dummy(f"g{k}") for k, g in enumerate(adjoint.gs)
                   if g is not None and fill_value(g) is None}
        body = self.expr(inner, symbols) if inner is not None else None
        constants = [k for k, g in enumerate(adjoint.gs) if g is not None and fill_value(g) is not None]
        for k, g in enumerate(adjoint.gs):
            if g is None:
                continue
            out = node.outputs[k]
            residual = self.grad_name(out)
            local = self.local(body, symbols, adjoint.gs, k, constants)
            if local is not None and folded:
                local = _divided(local, sympy.Integer(count))
            printed = self.math(local) if local is not None else "?"
            row = Adjoint(step.index, node.loc, self.name(out), self.text(v), residual,
                          out is seed and gs[k].closed == 1, local, printed, self.grad_name(v), "")
            if local == 0:
                row.contribution = "0"
                row.note = f"no gradient reaches {row.input} through this operation"
                yield row, None
                continue
            if local is not None:
                contribution = times(residual, local, printed)
            elif body is not None:  # the emitted gradient itself, when no single derivative can be read off it
                contribution = self.math(body, {symbols[x]: self.grad_name(node.outputs[j])
                                                for j, x in enumerate(adjoint.gs) if x in symbols})
            else:
                contribution = "?"
            if summed is not None:
                contribution = _numpy_text(summed, [_atom(contribution)], None)
            elif folded or (r is None and shape != to_shape):
                contribution = sum_to_text(_atom(contribution), shape, to_shape)
            if r is None:  # the rule dropped it: summed along those axes it is exactly 0
                row.contribution, row.closed = contribution, "0"
                row.note = (f"{residual} sums to zero along {_axes_words(adjoint.gs[k].zero_sum_axes)}, "
                            f"so no gradient reaches {row.input}")
                yield row, None
                continue
            row.contribution = contribution
            closed = None
            if local is not None:
                closed = gs[k].closed * local
                if summed is not None or folded:
                    closed = (closed * count) if closed.is_Number else Summed(
                        closed, sympy.Tuple(*shape), sympy.Tuple(*to_shape))
            text = self.math(closed) if closed is not None else ""
            if closed is not None and len(text) <= CLOSED_FORM_LIMIT and \
                    gs[k].closed != sympy.Symbol(residual, real=True):
                row.closed = text
            yield row, _Part(closed if closed is not None and len(text) <= CLOSED_FORM_LIMIT else None, contribution)

    @staticmethod
    def local(body, symbols, gs, k, constants):
        """d output_k / d input from the emitted gradient body, linear in the incoming gradients."""
        if body is None:
            return None
        g = gs[k]
        if g in symbols:
            return sympy.diff(body, symbols[g])
        if len(constants) > 1:
            return None  # several constant residuals folded into one number: not one derivative each
        rest = body.xreplace({s: 0 for s in symbols.values()})
        return _divided(rest, number(fill_value(g)))

    def zero_sum_gradient(self, adjoint):
        """The emitted body of a gradient the rule then dropped (it sums to zero along the axes it is summed over)."""
        used = set()
        for j, x in enumerate(adjoint.results):
            while x is not None and x.node in adjoint.nodes and x.node.prim is SumTo:
                x = x.node.inputs[0]
            used.add(x)
        candidates = [o for n in adjoint.nodes if n.prim is Kernel for o in n.outputs
                      if o.zero_sum_axes and o not in used]
        if len(candidates) != 1:
            candidates = [g for g in adjoint.gs if g is not None and g.zero_sum_axes]
        return candidates[0] if len(candidates) == 1 else None


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
    """The backprop table of `gradfn` specialised for `args`, as text (GradFunction.explain); under a
    memory budget, then what is kept and what is recomputed (the memory report)."""
    text = render(backprop_table(gradfn, *args, **kwargs))
    compiled = gradfn._last
    regions = regions_report.for_call(gradfn, args, kwargs).lines()
    if regions:
        text += "\n" + "\n".join(regions) + "\n"
    if compiled is not None and compiled.memory_budget is not None:
        report = str(gradfn.specialiser.memory(compiled)).splitlines()
        text += "\nmemory: " + report[0] + "\n" + "\n".join("  " + line for line in report[1:]) + "\n"
    return text


# ---- forward mode and higher order ---------------------------------------------------------------

ENTRY_WORDS = {
    "jvp": "forward mode: each tangent t_v is the local derivative applied to the tangents of its inputs",
    "vjp": "reverse mode seeded with the cotangent argument (d_<result>) instead of d_loss = 1",
    "jacobian": "the basis of the smaller side carried as a leading axis of the tangents",
    "hvp": "forward over reverse: the tangents of the forward and backward passes; t_d_x is H @ t_x",
    "hessian": "forward over reverse along each parameter's basis, carried as a leading axis",
}


def explain_entry(fn, compiled, args, kwargs) -> str:
    """explain for sb.jvp / vjp / jacobian / hessian / hvp: where reverse mode is part of it, the backprop
    table (seeded with d_loss = 1, or with the cotangent); where forward mode is, the table of tangent
    rules (each operation, forward or backward, beside the tangent its rule computes from its inputs'
    tangents); then the statements of the generated NumPy code, each with its model line. The tables are
    read off the graph right after the entry point's differentiating stage (stages.build_rules), before
    fusion across statements and sharing across kernels."""
    entry = compiled.entry
    lines = [f"{entry} of {compiled.fn.__name__} wrt "
             f"{', '.join(compiled.specs[i].name for i in compiled.wrt)}: {ENTRY_WORDS[entry]}"]
    if compiled.mode:
        lines[0] += f" ({compiled.mode} mode)"
    specs = compiled.specs[:len(fn.params)]
    program = stages.build_rules(compiled.fn, specs, compiled.backend, entry, wrt=compiled.wrt,
                                 single=compiled.single, has_aux=compiled.model_aux)
    graph = program.graph
    made = set(graph.tangent_origin)
    with distribute(False), writing(NumpyPrinter, graph.params) as writer:
        if graph.adjoints:  # reverse mode is part of it: the backprop table, seeded as the entry point seeds
            builder = _Builder(program, graph, program.traced_forward, program.wrt_values, None, writer)
            builder.specs = specs  # the model's arguments (the title), not the direction's
            builder.result = result = program.model_result
            step = graph.adjoints.get(result.node)
            seed = step.gs[result.node.outputs.index(result)] if step is not None else None
            if entry in ("vjp", "jacobian") and seed is not None:
                builder.cotangent = seed
            table = builder.build()
            if builder.cotangent is not None:
                table.title = table.title.replace(": gradient with respect to",
                                                  f": {builder.name(seed)} @ J with respect to", 1)
            heading = {"vjp": "the vector-Jacobian product, by reverse mode seeded with the cotangent:",
                       "jacobian": "the backward pass, seeded with a cotangent (the result's basis, below):"}
            lines += ["", heading.get(entry, "the gradient, by reverse mode:"), render(table).rstrip("\n")]
        if graph.tangent_passes:
            if graph.adjoints:  # a backward value the backprop table calls d_h is d_h here too
                _same_gradient_names(writer, builder.grad_names, graph, made)
            primal = _TangentBuilder(program, graph, {n for n in graph.nodes if n not in made}, program.wrt_values,
                                     None, writer)
            lines += [""] + _tangent_table(primal, graph, made, program.traced_forward)
    source = compiled.source if compiled.backend.language == "python" else stages_numpy_source(fn, compiled)
    body = [l for l in source.splitlines() if l.startswith("    ") and not l.strip().startswith(('"""', "#", "with "))]
    lines += ["", "generated:"] + body
    text = "\n".join(lines) + "\n"
    if compiled.memory_budget is not None:  # as explain of a gradient: then what is kept and recomputed
        report = str(fn.specialiser.memory(compiled)).splitlines()
        text += "\nmemory: " + report[0] + "\n" + "\n".join("  " + line for line in report[1:]) + "\n"
    return text


class _TangentBuilder(_Builder):
    """Writes the tangent table: every primal value (forward or backward) by its name, a view the backward
    pass takes of a value no seed reaches (W.T) written out where it is read."""

    inline: set = frozenset()

    def expr(self, v, leaves):
        if v not in leaves and v.node is not None and v.node in self.inline:
            return self.opaque_expr(v, leaves)
        return super().expr(v, leaves)

    def text(self, v) -> str:
        if v.node is not None and v.node in self.inline:
            return self.node_text(v, {}, {})
        return super().text(v)


def _views(graph, made, traced_forward, tangents):
    """The backward pass's transposes, reshapes and broadcasts of values without a tangent in this pass."""
    return {n for n in graph.nodes if n not in made and n not in traced_forward
            and n.prim in (Transpose, Reshape, BroadcastTo) and not any(v in tangents for v in n.outputs)}


def _same_gradient_names(writer, grad_names, graph, made):
    """Name each backward value as the backprop table named the gradient it is (d_h), where it is the
    only value that is that gradient."""
    by_target: dict = {}
    for node in graph.nodes:
        if node in made:
            continue
        for v in node.outputs:
            if v.grad_of is not None and v.name is None:
                by_target.setdefault(v.grad_of, []).append(v)
    for target, values in by_target.items():
        if len(values) == 1 and target in grad_names and values[0] not in writer.names:
            writer.names[values[0]] = grad_names[target]


def _tangent_table(builder, graph, made, traced_forward) -> list:
    """The lines of the tangent-rule table: one per forward-mode pass (a Jacobian or Hessian has one per
    parameter), a row per operation a seed reaches, `t_h = t_z*(1 - h**2)`."""
    lines = []
    for seeds, tangents in graph.tangent_passes:
        builder.inline = _views(graph, made, traced_forward, tangents)
        leaves = {}
        for v, t in seeds.items():  # an argument t_<x>, or a basis as a constant
            leaves[t] = sympy.Symbol(builder.name(t) if t.node is None else f"t_{builder.name(v)}", real=True)
        for v, t in tangents.items():
            leaves.setdefault(t, sympy.Symbol(builder.name(t), real=True))
        said = []
        for v, t in seeds.items():
            if t.node is None:
                said.append(f"{leaves[t]} (argument)")
            else:
                said.append(f"{leaves[t]} = {_numpy_text(t.node, [], ['_'])} (the basis of {builder.name(v)}, "
                            "one direction per leading index)")
        lines += ["tangents along " + "; ".join(said) + ": each operation's tangent rule, applied to the "
                  "tangents of its inputs"]
        rows, index = [], 0
        for node in graph.nodes:
            if node in made or not any(v in tangents for v in node.outputs):
                continue
            if node.prim is Fill:
                continue
            index += 1
            step = builder.step(index, node)
            rules = []
            for k, v in enumerate(node.outputs[:builder.n_outputs(node)]):
                t = tangents.get(v)
                if t is not None:
                    rules.append(f"{leaves[t]} = {_tangent_text(builder, t, leaves, made)}")
            rows.append([index, node.loc.short() if node.loc and node.loc.line else "", step.operation,
                         "; ".join(rules)])
        lines += _columns(rows, ["#", "line", "operation", "tangent"]) if rows else ["  (none)"]
        lines.append("")
    return lines[:-1]


def _tangent_text(builder, t, leaves, made):
    """The tangent `t` as its rule built it, over the tangents of the operation's inputs (by name) and
    primal values."""
    node = t.node
    if node is None or node not in made:
        return builder.math(leaves[t])
    if node.prim is Kernel:
        return builder.math(builder.body(node, node.outputs.index(t), leaves))
    return builder.node_text(t, leaves, {})


def stages_numpy_source(fn, compiled):
    """The NumPy source of the same specialisation (explain reads NumPy statements whatever the backend)."""
    specs = compiled.specs[:len(fn.params)]
    return fn.specialiser.compile(specs, kind=compiled.entry, backend=get_backend("numpy")).source
