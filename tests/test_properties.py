"""Property tests: random elementwise expressions, gradients against finite differences."""
import importlib.util
import itertools

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

import symbackprop as sb
from gradcheck import assert_gradients_match

LEAVES = ["x", "y", "0.5", "2.0", "-1.5"]
UNARY = ["np.tanh({})", "np.sin({})", "np.cos({})", "np.exp(-({})**2)", "np.log(1.0 + ({})**2)",
         "np.sqrt(({})**2 + 0.5)", "1/(1 + np.exp(-({})))", "np.arctan({})", "np.square({})",
         "np.log1p(({})**2)", "np.expm1(np.tanh({}))", "np.cosh(np.tanh({}))", "np.abs({} + 3.0)",
         "np.where({0} > 0.1, {0}, 0.5 * {0})", "np.maximum({}, -3.0)", "np.clip({}, -3.0, 3.0)"]
BINARY = ["({}) + ({})", "({}) - ({})", "({}) * ({})", "({}) / (1.5 + np.tanh({}))", "np.minimum({}, {} + 4.0)"]


def expressions(depth):
    leaf = st.sampled_from(LEAVES)
    if depth == 0:
        return leaf
    sub = expressions(depth - 1)
    return st.one_of(
        leaf,
        st.builds(lambda f, a: f.format(a), st.sampled_from(UNARY), sub),
        st.builds(lambda f, a, b: f.format(a, b), st.sampled_from(BINARY), sub, sub),
    )


_counter = itertools.count()


def load_model(tmp_path, body):
    path = tmp_path / f"prop_{next(_counter)}.py"
    path.write_text(f"import numpy as np\n\n\ndef model(x, y):\n    z = {body}\n    return np.sum(z * z)\n")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.model


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=expressions(3), seed=st.integers(0, 10_000))
def test_random_elementwise_expressions(tmp_path, body, seed):
    model = load_model(tmp_path, body)
    rng = np.random.default_rng(seed)
    args = [rng.uniform(-2, 2, size=(3, 4)), rng.uniform(-2, 2, size=4)]
    # keep clear of the kinks, where a finite difference straddles two branches
    for a in args:
        a[np.abs(a - 0.1) < 1e-3] += 0.01
    f = sb.value_and_grad(model, wrt=(0, 1))
    value, grads = f(*args)
    np.testing.assert_allclose(value, model(*args), rtol=1e-10, atol=1e-10)
    assert_gradients_match(model, grads, args, (0, 1), rtol=1e-4, atol=1e-6)
    again = sb.value_and_grad(model, wrt=(0, 1))
    again(*args)
    assert again.source == f.source


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=expressions(3), x=st.floats(-2, 2), y=st.floats(-2, 2))
def test_random_scalar_expressions_on_python_floats(tmp_path, body, x, y):
    """Python floats compile to `math` code: a different printer, checked the same way."""
    model = load_model(tmp_path, body)
    x, y = (v + 0.01 if abs(v - 0.1) < 1e-3 else v for v in (x, y))
    value, grads = sb.value_and_grad(model, wrt=(0, 1))(x, y)
    assert all(type(g) is float for g in grads)
    with np.errstate(all="ignore"):
        want = float(model(np.float64(x), np.float64(y)))
    np.testing.assert_allclose(value, want, rtol=1e-10, atol=1e-10)
    assert_gradients_match(model, grads, [x, y], (0, 1), rtol=1e-4, atol=1e-6)
