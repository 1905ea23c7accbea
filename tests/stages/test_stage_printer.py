"""The NumPy printer and writer: kernel bodies as NumPy (or math) text, nodes as named statements.

Where exact text is asserted it is text a person would write for that body, and
the comment says why the printer chose it. Everything else is checked by
evaluating the printed text and comparing it with the SymPy body evaluated by
sympy.lambdify, which does not go through the package's printer.
"""
import math

import numpy as np
import pytest
import sympy

# the package, in one place
from symbackprop import errors, ir
from symbackprop.backends.numpy import module, printer, writer
from symbackprop.passes import fuse
from symbackprop.primitives import elementwise, ops, scalar

import stagekit as kit

a0, a1 = kit.a(0), kit.a(1)
NAMES = {a0: "x", a1: "y"}


def numpy_text(expr, bools=()):
    return printer.NumpyPrinter(NAMES, frozenset(bools)).doprint(expr)


def math_text(expr):
    return printer.MathPrinter(NAMES).doprint(expr)


@pytest.mark.parametrize("expr, text, why", [
    (a0**3, "(x*x*x)", "NumPy takes the slow general pow() for x**3; a product is the fast spelling"),
    (a0**2, "x**2", "NumPy squares quickly; x**2 is the plain spelling"),
    (1 / a0, "1/x", "a reciprocal, not x**(-1)"),
    (1 / sympy.sqrt(a0), "1/np.sqrt(x)", "not x**(-0.5)"),
    (scalar.sigmoid(a0), "1/(1 + np.exp(-x))", "the textbook logistic function"),
    (sympy.Rational(1, 128) * a0, "x/128", "1/128 is exactly the float x*0.0078125"),
    (sympy.atan(a0), "np.arctan(x)", "NumPy's name for SymPy's atan"),
    (scalar.maximum(a0, 0), "np.maximum(x, 0)", "elementwise max, not Python's max"),
    (a1 * sympy.exp(-a0), "y*np.exp(-x)", "as written"),
])
def test_numpy_text_of_small_bodies(expr, text, why):
    assert numpy_text(expr) == text, why


@pytest.mark.parametrize("expr, text, why", [
    (sympy.exp(a0), "math.exp(x)", "Python floats: math is about 25x cheaper than NumPy scalars"),
    (scalar.maximum(a0, a1), "max(x, y)", "the builtin max of two floats"),
    (scalar.absolute(a0), "abs(x)", "the builtin abs"),
    (sympy.atan(a0), "math.atan(x)", "math's name"),
])
def test_math_text_of_small_bodies(expr, text, why):
    assert math_text(expr) == text, why


BODIES = [
    a0**3, a0**4, (a0 + a1)**2, 1 / (a0 + 1), a0**-2, sympy.sqrt(a0 * a0 + 1), scalar.sigmoid(a0 - a1),
    scalar.softplus(a0), scalar.where(scalar.gt(a0, 0), a0, a1), scalar.minimum(a0, a1) * 3,
    scalar.log1p(a0 * a0), scalar.expm1(a0), sympy.Float(0.1, 17) * a0 - sympy.pi * a1,
    -scalar.gt(a0, 0) / 2, scalar.gt(a0, 0) - scalar.lt(a0, 0), scalar.sign(a0) * a1, sympy.tanh(a0) / a1,
]


@pytest.mark.parametrize("expr", BODIES, ids=str)
def test_printed_numpy_computes_the_body(expr):
    x = np.array([-1.5, -0.25, 0.5, 1.0, 2.0])
    y = np.array([0.5, -2.0, 1.25, 3.0, -0.75])
    text = numpy_text(expr)
    got = eval(text, {"np": np, "x": x, "y": y})
    expected = kit.numeric(expr, [a0, a1])(x, y)
    np.testing.assert_allclose(np.broadcast_to(got, x.shape), np.broadcast_to(expected, x.shape), rtol=1e-14,
                               err_msg=text)


@pytest.mark.parametrize("expr", [e for e in BODIES if not e.has(scalar.sign, scalar.where)], ids=str)
def test_printed_math_computes_the_body_on_floats(expr):
    text = math_text(expr)
    assert "np." not in text
    for x, y in ((-1.5, 0.5), (0.5, 3.0), (2.0, -0.75)):
        got = eval(text, {"math": math, "x": x, "y": y})
        assert isinstance(got, (float, int)), text
        assert got == pytest.approx(float(kit.numeric(expr, [a0, a1])(x, y)), rel=1e-14), text


def test_a_boolean_array_is_never_negated():
    # NumPy refuses -mask and mask - mask on boolean arrays: the printer keeps a number in front
    mask = np.array([True, False, True])
    for expr in (-scalar.gt(a0, 0) / 2, scalar.gt(a0, 0) - scalar.lt(a0, 0)):
        text = numpy_text(expr)
        x = np.array([1.0, -1.0, 2.0])
        np.testing.assert_allclose(eval(text, {"np": np, "x": x}), kit.numeric(expr, [a0])(x))
    # a boolean input symbol: -m/2 must not negate it either
    text = numpy_text(-a0 / 2, bools=[a0])
    np.testing.assert_allclose(eval(text, {"np": np, "x": mask}), [-0.5, 0, -0.5])


# ---- the writer: nodes as statements ---------------------------------------------------------------

def small_network():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (4, 3))
        W = kit.param(g, "W", (3, 2))
        G = kit.param(g, "G", (4, 2))
        with ir.at(errors.Loc("/somewhere/model.py", 7, "z = x @ W")):
            z = x @ W
        z.name = "z"
        h = ops.unary("tanh", z)
        h.name = "h"
        total = ops.sum(h)
        total.name = "loss"
        d_z = elementwise.kernel([G, h], (a0 * (1 - a1**2),), (4, 2))[0]
        d_z.grad_of = z
        d_x = d_z @ W.T
        d_x.grad_of = x
    return g, total, d_x


def statements(g, results):
    with writer.writing(printer.NumpyPrinter, g.params) as w:
        return writer.write_statements(w, g.nodes, writer.inlinable_views(g.nodes, results))


def test_statements_are_named_after_the_model_and_its_gradients():
    g, total, d_x = small_network()
    lines = statements(g, [total, d_x])
    code = [line.split("#")[0].rstrip() for line in lines]
    assert code == [
        "z = np.dot(x, W)",         # a 2-d product: np.dot is the same BLAS call as @, without ufunc dispatch
        "h = np.tanh(z)",
        "loss = h.sum()",
        "d_z = G*(1 - h**2)",       # the gradient of z is d_z: backprop as it is taught
        "d_x = np.dot(d_z, W.T)",   # W.T is read once: written where it is read, not as a statement
    ]
    # each statement from a model line says which, in a column of its own
    assert lines[0] == "z = np.dot(x, W)".ljust(writer.COMMENT_COLUMN) + "# model.py:7"
    assert lines[1] == "h = np.tanh(z)"


def test_names_never_shadow_and_never_repeat():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (3,))
        first = ops.unary("exp", x)
        first.name = "h"
        second = ops.unary("sin", first)
        second.name = "h"                  # a loop reassigning h
        shadow = ops.sum(second)
        shadow.name = "sum"                # would hide the builtin in generated code
        anonymous = ops.unary("cos", shadow)
    lines = statements(g, [anonymous])
    assert [line.split(" = ")[0] for line in lines] == ["h", "h_1", "sum_1", "t1"]


def test_a_kernel_prints_its_temps_then_its_outputs():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (4,))
        (p,) = elementwise.kernel([x], (sympy.exp(a0) / (1 + sympy.exp(a0)),), (4,))
        p.name = "p"
    fuse.finalize_kernels(g)  # exp(x) becomes a temp of the kernel's program
    # exp(x) once, then the output reading it, as a person would write it by hand
    assert statements(g, [p]) == ["t1 = np.exp(x)", "p = t1/(1 + t1)"]


def test_a_kernel_output_gets_its_declared_shape_and_dtype():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (4, 3))
        s = kit.param(g, "s", (4, 1))
        (wide,) = elementwise.kernel([s], (1 / a0,), (4, 3))              # reads only (4, 1)
        (narrow,) = elementwise.kernel([x], (2 * a0,), (4, 3), dtype=np.float32)
        wide.name, narrow.name = "r", "q"
    lines = statements(g, [wide, narrow])
    # NumPy would give 1/s the shape (4, 1) and 2*x the dtype float64: the text says what the IR declares
    assert lines == ["r = np.full((4, 3), 1/s, dtype=np.float64)", "q = (2*x).astype(np.float32)"]
    x_, s_ = np.arange(12.0).reshape(4, 3), np.arange(1.0, 5.0).reshape(4, 1)
    r = eval(lines[0].split(" = ", 1)[1], {"np": np, "s": s_})
    q = eval(lines[1].split(" = ", 1)[1], {"np": np, "x": x_})
    assert r.shape == (4, 3) and np.allclose(r, 1 / s_)
    assert q.dtype == np.float32 and np.allclose(q, 2 * x_)


def test_np_errstate_only_where_numpy_could_warn():
    for fn, warns in (("tanh", False), ("log", True), ("exp", True)):
        g = kit.graph()
        with kit.building(g):
            x = kit.param(g, "x", (3,))
            g.result = ops.sum(ops.unary(fn, x))
        text, _ = writer.write_function("f", g.params, [], g.nodes, set(g.nodes), g.result, None, None, "doc")
        # tanh(+-inf) is +-1 and never warns; log(0) and exp(1000) do
        assert ("np.errstate" in text) == warns, fn


def test_values_function_runs_a_piece_of_a_graph():
    # check_grad's localisation runs the forward graph, and each node with its adjoint, through this
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (3, 4))
        W = kit.param(g, "W", (4, 2))
        t = ops.matmul(x, W)
        h = ops.unary("tanh", t)
        s = ops.sum(h, (1,), keepdims=False)
    r = np.random.default_rng(0)
    inputs = {x: r.normal(size=(3, 4)), W: r.normal(size=(4, 2))}
    source, run = module.values_function(g.params, g.nodes, [t, h, s, x], "a test piece")
    got = run(inputs[x], inputs[W])
    want = kit.evaluate(g, inputs)
    assert len(got) == 4
    for v, value in zip([t, h, s], got):
        np.testing.assert_allclose(value, want[v], rtol=1e-13)
    assert got[3] is inputs[x]  # a parameter returned is the argument itself
    assert "def values(x, W):" in source
