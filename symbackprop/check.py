"""sb.check_grad: the compiled gradient against central finite differences of the model run as plain NumPy.

The numbers it compares against never come from the compiler: the model is an
ordinary Python function, so it is called directly, in float64, at x + h and
x - h for each probed entry (h = step * max(1, |x|)). The report is truthy when
every probed entry agrees within `atol + rtol * |numeric|`, and prints the worst
entries of each parameter.

When they disagree, the check localises: it takes the model's forward graph as
reverse mode sees it (the `gradient` stages, in float64, on the NumPy backend),
runs it once to get the value of every node, and then checks each node's adjoint
alone, from the loss backwards. For a node y = f(x_1, ..., x_n) it draws a
cotangent u for the outputs reverse mode sent a gradient to and a direction e_i
for each input it asked a gradient of, builds the node and the adjoint its
primitive's rule gives (the same `adjoint` the compiler calls, an elementwise
kernel's SymPy derivative included) in a graph of their own, and compares
<adjoint(u)_i, e_i> with the central difference of <u, f(x + h e_i)> at the values
the model reached. A failing check is re-run with a finer step and along a second
direction: where the central difference changes with the step or is not linear
in the direction, the operation is not differentiable there (a kink, a jump, a
tie), and the check is marked as at a kink. The report names the first failing
operation from the loss backwards that is not at a kink (else the first at a
kink): its model line, the operation, and the two numbers. When every local check
agrees, the report says it cannot tell (the difference is then in what no single
rule does: the sums of gradient contributions, a backend's code, the forward
pass, or a kink between the probed points).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import sympy

from .dtypes import is_bfloat16, is_float
from . import backends
from .api import GradFunction
from .backends.numpy.module import values_function
from .backends.numpy.printer import NumpyPrinter
from .backends.numpy.writer import writing
from .errors import Loc
from .explain import math_text, operation_text
from .frontend.signature import flatten, rebuild, slots
from .ir import Graph, Value, append, at, building
from .pipeline import stages
from .pipeline.specialiser import Specialiser, resolve_wrt
from .primitives.elementwise import Fill, Kernel, arg, expand, number
from .primitives.custom import CUSTOM_CALLS
from .primitives.shape import StopGradient
from .program import Program

#: central-difference step, relative to max(1, |x|): about the cube root of float64's epsilon, so that
#: truncation (h**2) and rounding (eps/h) errors are of one size, near 1e-11 relative
STEP = 6e-6
#: tolerances by the parameter's dtype: a float32 gradient is computed in float32
TOLERANCES = {np.dtype(np.float64): (1e-5, 1e-7), np.dtype(np.float32): (2e-3, 1e-4),
              np.dtype(np.float16): (3e-2, 3e-2)}
#: bfloat16 (NumPy kind "V", so not a key above): 8 bits of precision, its eps 7.8e-3
BFLOAT16_TOLERANCE = (1e-1, 1e-1)
#: a local check agrees within LOCAL_RTOL of the sum of |terms| of <adjoint(u), e> (and of the central
#: difference), plus LOCAL_ATOL of the sum of |terms| of <u, f(x)> (the rounding a central difference of
#: it carries is about 1e-11 of that): a wrong rule is off by a fraction of the first, not 1e-6 of it
LOCAL_RTOL, LOCAL_ATOL = 1e-6, 1e-9


@dataclass
class Entry:
    index: tuple
    compiled: float
    numeric: float

    @property
    def error(self) -> float:
        return abs(self.compiled - self.numeric)


@dataclass
class ParameterCheck:
    """One parameter's comparison: the probed entries, worst first."""

    name: str
    shape: tuple
    rtol: float
    atol: float
    probed: int
    entries: list = field(default_factory=list)   # every probed Entry, worst first

    @property
    def failures(self) -> list:
        return [e for e in self.entries if not e.error <= self.atol + self.rtol * abs(e.numeric)]

    @property
    def max_abs_error(self) -> float:
        return max((e.error for e in self.entries), default=0.0)

    def __bool__(self):
        return not self.failures


@dataclass
class LocalCheck:
    """One forward operation's adjoint toward one of its inputs, against a central difference of the
    operation alone: <adjoint(u), e> and (<u, f(x + h e)> - <u, f(x - h e)>) / 2h."""

    loc: Loc                 # the model line (loc.text: the line as written)
    operation: str           # the operation in the names of the generated code: "h = tanh(b1 + t1)"
    input: str               # the input differentiated: "t1"
    adjoint: float
    numeric: float
    tolerance: float
    kink: bool = False       # failing, but the operation is not differentiable (or not finite) within the step
    fused: tuple = ()        # an elementwise kernel's other lines: where the values fused into it were written

    @property
    def error(self) -> float:
        return abs(self.adjoint - self.numeric)

    def __bool__(self):
        return bool(self.error <= self.tolerance)  # nan disagrees

    def __str__(self):
        return (f"{self.loc.short()}: `{self.loc.text}` ({self.operation}), toward {self.input}: "
                f"adjoint {self.adjoint:+.10g}, central difference {self.numeric:+.10g}"
                + (" (at a kink)" if self.kink else ""))


@dataclass
class Localisation:
    """Each forward operation's local check, from the loss backwards (the order reverse mode runs)."""

    checks: list = field(default_factory=list)   # LocalCheck, from the loss backwards
    operations: int = 0                          # the operations checked
    backend: str = "numpy"                       # where the operations and their adjoints were run
    stopped: list = field(default_factory=list)  # where the model calls sb.stop_gradient (Locs)

    @property
    def failures(self) -> list:
        return [c for c in self.checks if not c]

    @property
    def culprit(self) -> LocalCheck | None:
        """The first failing local check from the loss backwards where the operation is differentiable (a
        wrong rule), else the first failing at a kink, else None: localisation cannot tell."""
        failures = self.failures
        return next((c for c in failures if not c.kink), failures[0] if failures else None)

    def lines(self, backend) -> list:
        culprit = self.culprit
        if culprit is None:
            elsewhere = "the sums of gradient contributions, the forward pass, a kink between the probed points, " \
                        "or the backend's code" + (f" (compare backend={self.backend!r})" if backend != self.backend
                                                   else "")
            text = [f"  not localised: the local derivative of each of the {self.operations} operations agrees with "
                    f"central differences (float64, {self.backend} backend),",
                    f"      so no one line's rule is wrong; the difference is elsewhere: {elsewhere}"]
            if self.stopped:
                text.append("      the model calls sb.stop_gradient (" + ", ".join(
                    dict.fromkeys(loc.short() for loc in self.stopped)) + "): its derivative is zero by definition, "
                    "while the model run as plain NumPy differentiates through it")
            return text
        c = culprit
        text = [f"  localised to {c.loc}: `{c.loc.text}`"]
        text += [f"      with, fused into it, {loc}: `{loc.text}`" for loc in c.fused]
        if c.kink:
            text.append(f"      {c.operation} is not differentiable within the step there (a kink, a jump or a tie: "
                        "the central difference changes with the step or is not linear in the direction);")
            text.append("      its derivative there is the convention's (docs/language.md), and the central "
                        "difference straddles it:")
        else:
            text.append(f"      the local derivative of {c.operation} disagrees with central differences:")
        same = [o for o in self.failures if o is not c and (o.loc, o.operation) == (c.loc, c.operation)]
        text.append(f"      toward {c.input}: <adjoint(u), e> = {c.adjoint:+.10g}, central difference {c.numeric:+.10g}"
                    + (f" (and toward {', '.join(o.input for o in same)})" if same else ""))
        text.append(f"      (u a random cotangent, e a random direction; float64, {self.backend} backend)")
        others = [o for o in self.failures if o is not c and o not in same]
        if others:
            shown = list(dict.fromkeys(f"{o.loc.short()} ({o.operation}{', at a kink' if o.kink else ''})"
                                       for o in others))
            text.append("      also disagreeing: " + "; ".join(shown[:4]) + ("; ..." if len(shown) > 4 else ""))
        return text


@dataclass
class GradCheck:
    """The report of sb.check_grad: truthy when every parameter agrees."""

    model: str
    parameters: list
    backend: str = "numpy"
    localisation: Localisation | None = None     # made when the gradients disagree (localise=True)

    def __bool__(self):
        return all(self.parameters)

    @property
    def culprit(self) -> LocalCheck | None:
        """The local check naming the model line whose derivative disagrees, or None."""
        return self.localisation.culprit if self.localisation is not None else None

    def __str__(self):
        lines = [f"check_grad({self.model}): {'gradients agree' if self else 'GRADIENTS DISAGREE'} "
                 "with central finite differences (float64)"]
        for p in self.parameters:
            verdict = "ok" if p else f"{len(p.failures)} of {p.probed} probed entries disagree"
            lines.append(f"  {p.name}{list(p.shape)}: {verdict}; max |compiled - numeric| = {p.max_abs_error:.3g} "
                         f"(rtol {p.rtol:g}, atol {p.atol:g}, {p.probed} entries probed)")
            for e in p.entries[:3]:
                where = "" if not p.shape else str(list(e.index))
                lines.append(f"      {p.name}{where}: compiled {e.compiled:+.10g}, numeric {e.numeric:+.10g}, "
                             f"error {e.error:.3g}")
        if self.localisation is not None:
            lines += self.localisation.lines(self.backend)
        return "\n".join(lines)

    __repr__ = __str__


def check_grad(f, *args, wrt=None, backend=None, rtol=None, atol=None, max_entries=64, seed=0, has_aux=None,
               localise=True, **kwargs):
    """Compare f's compiled gradient at `args` with central finite differences in float64.

    `f` is a model or an sb.grad / sb.value_and_grad function (its wrt, backend and has_aux are then the
    defaults; otherwise the default backend, NumPy). Each parameter in `wrt` is probed at every entry, or at `max_entries` entries drawn
    with `seed` when it has more. `rtol`/`atol` default by the parameter's dtype (TOLERANCES).
    With has_aux=True the model returns (loss, aux) and the loss is checked.

    When they disagree and `localise` is true, each operation's adjoint is checked alone (on the NumPy
    backend, see `localise_disagreement`) and the report names the model line whose local derivative
    disagrees (not yet for has_aux models, whose report says only that they disagree).
    """
    if isinstance(f, GradFunction):
        if wrt is None:
            wrt = tuple(f.params[i] for i in f.wrt) if not f.single else f.params[f.wrt[0]]
        backend = f.backend if backend is None else backend
        has_aux = f.has_aux if has_aux is None else has_aux
        f = f.fn
    has_aux = bool(has_aux)
    gradient = GradFunction(f, wrt=wrt, backend=backend or backends.DEFAULT, with_value=False, has_aux=has_aux)
    args = gradient.specialiser.arguments(args, kwargs)
    indices, single = resolve_wrt(gradient.params, wrt)
    grads = gradient(*args)
    if has_aux:
        grads = grads[0]
    grads = (grads,) if single else tuple(grads)
    rng = np.random.default_rng(seed)
    loss = (lambda *a: f(*a)[0]) if has_aux else f
    checks = []
    sub, leaves = gradient.specialiser.flat(args)
    if sub.trees is not None:  # parameter trees: each differentiated leaf checked as a parameter of its own
        trees = sub.trees
        model = loss
        loss = lambda *ls: model(*[ls[t] if isinstance(t, int) else rebuild(t, ls) for t in trees])  # noqa: E731
        tree_args, args, flat_grads, flat_indices = args, list(leaves), [], []
        names = list(sub.params)
        for index, g in zip(indices, grads):
            t = trees[index]
            positions = [t] if isinstance(t, int) else [q.index for q in slots(t)]
            flat_grads += [g] if isinstance(t, int) else [leaf for _, leaf in flatten("g", g, True)[1]
                                                          if leaf is not None]
            flat_indices += positions
            if not isinstance(t, int):  # the leaves named as Python indexes them: params['layers'][0][1]
                spelled = [p for p, _ in flatten(gradient.params[index], tree_args[index], True, spelled=True)[1]]
                for k, p in zip(positions, spelled):
                    names[k] = p
        indices, grads = flat_indices, flat_grads
    else:
        names = gradient.params
    for index, g in zip(indices, grads):
        checks.append(_check_parameter(loss, args, index, names[index], np.asarray(g), rng, rtol, atol,
                                       max_entries))
    report = GradCheck(f.__name__, checks, gradient.backend)
    if not report and localise and not has_aux:
        report.localisation = localise_disagreement(f, args, indices, single, seed,
                                                    trees=sub if sub.trees is not None else None)
    return report


def _check_parameter(f, args, index, name, compiled, rng, rtol, atol, max_entries):
    x = args[index]
    default_rtol, default_atol = BFLOAT16_TOLERANCE if is_bfloat16(compiled.dtype) else \
        TOLERANCES.get(compiled.dtype, TOLERANCES[np.dtype(np.float64)])
    base = np.array(x, dtype=np.float64)
    flat = base.reshape(-1)
    probe = np.arange(flat.size)
    if flat.size > max_entries:
        probe = np.sort(rng.choice(flat.size, max_entries, replace=False))
    entries = []
    for i in probe:
        h = STEP * max(1.0, abs(flat[i]))
        values = []
        for step in (h, -h):
            moved = flat.copy()
            moved[i] += step
            call = list(args)
            call[index] = float(moved[0]) if isinstance(x, float) else moved.reshape(base.shape)
            with np.errstate(all="ignore"):  # plain NumPy may warn on a branch np.where does not take
                values.append(float(f(*call)))
        numeric = (values[0] - values[1]) / (2 * h)
        position = tuple(int(k) for k in np.unravel_index(i, base.shape)) if base.shape else ()
        entries.append(Entry(position, float(compiled.reshape(-1)[i]), numeric))
    check = ParameterCheck(name, base.shape, default_rtol if rtol is None else rtol,
                           default_atol if atol is None else atol, len(probe))
    # worst first: by how far past its tolerance each entry is
    # (rtol = atol = 0 asks for exact agreement: then by the error itself)
    check.entries = sorted(entries, key=lambda e: -(e.error / max(check.atol + check.rtol * abs(e.numeric), 1e-300)))
    return check


# ---- localisation: each operation's adjoint alone -------------------------------------------------

def _float64(a):
    if isinstance(a, np.ndarray) and is_float(a.dtype):
        return a.astype(np.float64)
    if isinstance(a, np.generic) and is_float(a.dtype):
        return np.float64(a)
    return a


def localise_disagreement(fn, args, wrt, single=False, seed=0, trees=None) -> Localisation:
    """Check each forward operation's adjoint alone, from the loss backwards (see the module docstring).
    With parameter trees, `args` are the leaves and `trees` the specialiser of their structure.

    Runs on the NumPy backend in float64 whatever backend the gradient was compiled for: the adjoint
    rules are the backends' common input, and NumPy runs one operation at a time.
    """
    backend = backends.get("numpy")
    args = [_float64(a) for a in args]
    if trees is None:
        specs = Specialiser(fn, "gradient", backend.name, tuple(wrt)).specs(args)
        layout = {}
    else:  # the model sees its trees rebuilt from the leaves, which are the graph's parameters
        specs = trees.specs(args)
        layout = {"trees": trees.trees, "tree_wrt": trees.outer.wrt, "tree_single": trees.outer.single}
    program = stages.run(Program(fn, specs, backend, "gradient", wrt=tuple(wrt), single=single, **layout),
                         stages.FORWARD)
    graph = program.graph
    forward = list(graph.nodes)
    # the forward nodes as reverse mode meets them: its kernel adjoints add residual outputs to them
    as_traced = {n: (dict(n.attrs), len(n.outputs)) for n in forward}
    outputs = [v for n in forward for v in n.outputs]
    # computed by no backend: a stop_gradient's value is its input, a custom_vjp call's the helper's value
    stopped = [n for n in forward if n.prim is StopGradient]
    custom = [n for n in forward if n.prim in CUSTOM_CALLS]
    aliases = [(n.out, n.inputs[0]) for n in stopped] + [(n.out, n.inputs[-1]) for n in custom]
    _, run = values_function(graph.params, [n for n in forward if n not in stopped and n not in custom], outputs,
                             f"the forward values of {fn.__name__}", aliases=aliases)
    inputs = [a for a, s in zip(args, specs) if s.dynamic]
    with np.errstate(all="ignore"):
        values = dict(zip(graph.params, inputs)) | dict(zip(outputs, run(*inputs)))
    stages.reverse_mode(program)
    rng = np.random.default_rng(seed)
    localisation = Localisation(backend=backend.name, stopped=[n.loc for n in stopped])
    with writing(NumpyPrinter, graph.params) as writer:  # named as generated code names them, in forward order
        for node in forward:
            for v in node.outputs[:as_traced[node][1]]:
                writer.name(v)
        for node in reversed(forward):
            step = graph.adjoints.get(node)
            if step is None or node.prim is StopGradient or node.prim in CUSTOM_CALLS:
                continue  # no gradient reaches it, none is meant to pass, or the rule is the user's (not localised)
            attrs, n_out = as_traced[node]
            localisation.operations += 1
            checks = _check_node(node, attrs, n_out, step, values, rng, writer)
            for c in checks:
                c.fused = tuple(loc for loc in graph.fused.get(node, ()) if loc != node.loc)
            localisation.checks += checks
    return localisation


def _input_text(writer, v):
    if v.node is not None and v.node.prim is Fill and v.shape == ():
        return repr(float(v.node.attrs["value"]))
    return writer.name(v)


def _operation(node, attrs, n_out, writer):
    """The operation in the generated code's names: `h = tanh(b1 + t1)`, `t1 = np.dot(x, W1)`."""
    outs = [writer.name(v) for v in node.outputs[:n_out]]
    ins = [_input_text(writer, v) for v in node.inputs]
    if node.prim is Kernel:
        rename = {arg(j): number(float(t)) if v.node is not None and v.node.prim is Fill and v.shape == ()
                  else sympy.Symbol(t, real=True) for j, (v, t) in enumerate(zip(node.inputs, ins))}
        bodies = expand(attrs["program"], attrs["outs"])[:n_out]
        return "; ".join(f"{o} = {math_text(b.xreplace(rename))}" for o, b in zip(outs, bodies))
    return f"{outs[0]} = {operation_text(node, ins, outs)}"


def _check_node(node, attrs, n_out, step, values, rng, writer) -> list:
    """The local checks of one forward node: one per input its adjoint was asked for."""
    graph = Graph()
    with building(graph), at(node.loc):
        xs = []
        for i, v in enumerate(node.inputs):
            x = Value(v.shape, v.dtype, None, f"x{i}")
            x.weak = v.weak
            xs.append(x)
        us = [None if g is None else Value(node.outputs[k].shape, np.float64, None, f"u{k}")
              for k, g in enumerate(step.gs)]
        graph.params = xs + [u for u in us if u is not None]
        made = append(node.prim, xs, dict(attrs))
        alone = (made if isinstance(made, tuple) else (made,))[0].node
        results = node.prim.adjoint(alone, us, list(step.wants))
    ys = alone.outputs[:n_out]
    returned = [r for r in results if r is not None]
    _, run = values_function(graph.params, graph.nodes, ys + returned, f"{node.prim.name} and its adjoint")
    x_values = [np.asarray(values[v]) for v in node.inputs]
    u_values = [None if u is None else rng.standard_normal(u.shape) for u in us]
    # entries of an output that are not finite at the model's values (a log of a negative number that a
    # later np.where drops) are left out: they get no cotangent, and are not added in
    with np.errstate(all="ignore"):
        first = run(*x_values, *[u for u in u_values if u is not None])
    finite = [np.isfinite(np.asarray(y, dtype=np.float64)) for y in first[:n_out]]
    u_values = [None if u is None else np.where(f, u, 0.0) for u, f in zip(u_values, finite)]
    cotangents = [u for u in u_values if u is not None]

    def evaluate(xv):
        """<u, f(xv)>, the sum of its |terms|, and the adjoint's results at xv."""
        with np.errstate(all="ignore"):
            got = run(*xv, *cotangents)
        terms = [np.where(f, u * np.asarray(y, dtype=np.float64), 0.0)
                 for u, y, f in zip(u_values, got[:n_out], finite) if u is not None]
        return sum(float(np.sum(t)) for t in terms), sum(float(np.sum(np.abs(t))) for t in terms), got[n_out:]

    centre, scale, grads = evaluate(x_values)
    grad_of = {}
    for i, r in enumerate(results):
        if r is not None:
            grad_of[i] = np.asarray(grads[len(grad_of)], dtype=np.float64)

    def sides(i, e, h=STEP):
        """<u, f> at x_i + h e and x_i - h e."""
        moved = list(x_values)
        moved[i] = x_values[i] + h * e
        plus = evaluate(moved)[0]
        moved[i] = x_values[i] - h * e
        return plus, evaluate(moved)[0]

    def central(i, e, h=STEP):
        plus, minus = sides(i, e, h)
        return (plus - minus) / (2 * h)

    def agrees(i, e, numeric, slack=1.0):
        """<adjoint(u), e>, the tolerance, and whether `numeric` agrees with it."""
        terms = grad_of[i] * e if i in grad_of else np.zeros(np.shape(e))
        analytic = float(np.sum(terms))
        tolerance = slack * (LOCAL_RTOL * (float(np.sum(np.abs(terms))) + abs(numeric)) + LOCAL_ATOL * scale)
        return analytic, tolerance, bool(abs(analytic - numeric) <= tolerance)

    checks = []
    operation = _operation(node, attrs, n_out, writer)
    for i, want in enumerate(step.wants):
        if not want:
            continue
        x = x_values[i] = x_values[i].astype(np.float64)
        # a random direction, scaled as the steps of the whole check are; none along entries where the input
        # or its gradient is not finite
        movable = np.isfinite(x) & np.isfinite(grad_of.get(i, 0.0))
        e = np.where(movable, rng.standard_normal(x.shape) * np.maximum(1.0, np.abs(x)), 0.0)
        numeric = central(i, e)
        analytic, tolerance, ok = agrees(i, e, numeric)
        kink = False
        if not ok:
            # not differentiable within the step (a corner, a jump, a tie of three or more in a max, a value on
            # np.where's boundary): the one-sided differences then differ by about as much as the two numbers
            # do (at a smooth point by h times the curvature), the central difference changes with the step,
            # or it is not linear in the direction
            plus, minus = sides(i, e)
            one_sided = abs((plus - centre) - (centre - minus)) / STEP
            finer = central(i, e, STEP / 16)
            other = np.where(movable, rng.standard_normal(x.shape) * np.maximum(1.0, np.abs(x)), 0.0)
            d_other, d_both = central(i, other), central(i, e + other)
            kink = bool(not np.isfinite(numeric + one_sided + finer + d_other + d_both)
                        or one_sided > 0.1 * abs(analytic - numeric) or abs(finer - numeric) > 16 * tolerance
                        or abs(d_both - numeric - d_other) > tolerance + agrees(i, other, d_other)[1]
                        + agrees(i, e + other, d_both)[1])
        checks.append(LocalCheck(node.loc, operation, _input_text(writer, node.inputs[i]), analytic, numeric,
                                 tolerance, kink))
    return checks
