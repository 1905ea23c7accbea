"""The table of scalar functions (primitives.scalar.FUNCTIONS) against everything that reads it.

A function added to the table without what a consumer needs fails here, naming the function:
a name the frontend does not resolve, a body a printer cannot write, one LLVM cannot lower.
"""
import importlib.util

import numpy as np
import pytest
import sympy
import llvmlite.binding as llvm
from llvmlite import ir

import symbackprop as sb
from symbackprop.backends.llvm import vecmath
from symbackprop.backends.llvm.expr import ExprLowering
from symbackprop.backends.numpy.printer import MathPrinter, NumpyPrinter
from symbackprop.explain import MathText
from symbackprop.frontend import namespace
from symbackprop.primitives import scalar

FUNCTIONS = list(scalar.FUNCTIONS.values())
IN_BODIES = [(f, cls) for f in FUNCTIONS for cls in f.classes]
X, Y, Z = (sympy.Symbol(n, real=True) for n in "xyz")


def _instance(cls, arity):
    args = (X, Y, Z)[:arity]
    if cls in scalar.BOOL_FUNCTIONS and cls not in scalar.COMPARISONS.values():
        args = tuple(scalar.gt(a, 0) for a in args)  # logical functions of comparisons
    if cls is scalar.where:
        args = (scalar.gt(X, 0), Y, Z)
    return cls(*args)


def _id(item):
    f, cls = item if isinstance(item, tuple) else (item, None)
    return f.name if cls is None else f"{f.name}-{cls.__name__}"


@pytest.mark.parametrize("function", FUNCTIONS, ids=_id)
def test_every_name_the_table_gives_is_one_the_frontend_resolves(function):
    for name in function.numpy_names:
        assert name in namespace.NUMPY, f"np.{name}"
    for name in function.math_names:
        assert name in namespace.MATH, f"math.{name}"


@pytest.mark.parametrize("function", FUNCTIONS, ids=_id)
def test_every_vecmath_implementation_the_table_names_exists(function):
    if function.llvm is not None:
        assert vecmath.UNARY[function.llvm] is getattr(vecmath, function.llvm)


@pytest.mark.parametrize("item", IN_BODIES, ids=_id)
def test_every_function_in_a_body_prints_in_numpy_math_and_explain(item):
    function, cls = item
    expr = _instance(cls, function.arity)
    if not isinstance(expr, cls):
        pytest.skip(f"{cls.__name__} folds its arguments")
    for printer in (NumpyPrinter({}), MathPrinter({}), MathText()):
        text = printer.doprint(expr)
        assert text and "NotImplemented" not in text
    if function.numpy is not None and function.infix is None:
        assert NumpyPrinter({}).doprint(expr).startswith(function.numpy + "(")


@pytest.mark.parametrize("item", IN_BODIES, ids=_id)
def test_every_function_in_a_body_lowers_to_llvm(item):
    function, cls = item
    expr = _instance(cls, function.arity)
    module = ir.Module()
    double = ir.DoubleType()
    fn = ir.Function(module, ir.FunctionType(double, [double] * 3), "f")
    builder = ir.IRBuilder(fn.append_basic_block())
    lower = ExprLowering(builder, double, dict(zip((X, Y, Z), fn.args)))
    builder.ret(lower.float(expr))
    llvm.parse_assembly(str(module)).verify()   # well-formed IR: LLVM's own verifier raises otherwise


UNARY = [name for name, f in scalar.NUMPY_NAMES.items() if f.arity == 1 and f.name != "logical_not"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """`np.sum(np.<name>(x))` for each name, defined in a file as the frontend needs."""
    path = tmp_path_factory.mktemp("models") / "unary_models.py"
    path.write_text("import numpy as np\n" + "".join(
        f"\n\ndef model_{name}(x):\n    return np.sum(np.{name}(x))\n" for name in UNARY))
    spec = importlib.util.spec_from_file_location("unary_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", UNARY)
def test_every_function_of_one_argument_computes_what_numpy_does(name, backend, models):
    x = np.linspace(0.1, 0.9, 7)
    model = getattr(models, f"model_{name}")
    value, _ = sb.value_and_grad(model, backend=backend)(x)
    np.testing.assert_allclose(value, model(x), rtol=1e-13)
