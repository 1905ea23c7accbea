"""The kinds of parameter a model's def may have (docs/language.md, "Parameters").

`*args` and `**kwargs` are a CompileError at the def's line, whatever the call; keyword-only
parameters (with or without defaults) and positional-only markers are supported, and a call
binds to them as Python would, on the first call and on the cached fast path after it.
"""
import importlib.util
import inspect

import numpy as np
import pytest

import symbackprop as sb
from symbackprop import cli


def star_args(x, *rest):
    return np.sum(x)


def star_kwargs(x, **options):
    return np.sum(x)


def both_stars(x, *rest, **options):
    return np.sum(x)


def keyword_only(x, w, *, scale):
    return np.sum(np.tanh(x * w) * scale)


def keyword_only_default(x, w, *, scale=2.0, squash=True):
    y = x * w
    if squash:
        y = np.tanh(y)
    return np.sum(y * scale)


def positional_only(x, w, /, b=0.5):
    return np.sum(np.tanh(x * w + b))


def mixed(x, /, w, *, scale=1.0, n):
    for _ in range(n):
        x = np.tanh(x * w)
    return np.sum(x) * scale


def _def_line(fn):
    return inspect.getsourcelines(fn)[1]


@pytest.mark.parametrize("model, star, hint", [
    (star_args, "`*rest`", "`def star_args(x, rest1, rest2)`"),
    (star_kwargs, "`**options`", "`def star_kwargs(x, scale=1.0)`"),
    (both_stars, "`*rest`", "List every parameter by name"),
])
@pytest.mark.parametrize("call", [
    lambda f, x: f(x), lambda f, x: f(x, 1.0), lambda f, x: f(x, scale=2.0), lambda f, x: f(x=x),
], ids=["one", "two", "keyword", "by_name"])
def test_star_parameters_are_compile_errors_at_the_def(backend, model, star, hint, call):
    """Any call (one positional value per named parameter, extra ones, keywords): the def's line,
    never a TypeError about a tuple or dict argument."""
    f = sb.value_and_grad(model, backend=backend)
    with pytest.raises(sb.CompileError) as info:
        call(f, np.ones(3))
    assert info.value.line == _def_line(model)
    assert info.value.file == __file__
    assert f"{star} parameters are not supported" in str(info.value)
    assert hint in str(info.value)


def test_star_parameters_in_a_train_step_and_grad():
    for make in (lambda m: sb.grad(m), lambda m: sb.train_step(m, sb.optim.SGD(0.1))):
        with pytest.raises(sb.CompileError, match="`\\*\\*options` parameters are not supported"):
            make(star_kwargs)(np.ones(3))


def test_keyword_only_parameters(backend):
    x, w = np.array([0.5, -1.0, 2.0]), np.array([1.0, 0.5, -0.25])
    f = sb.value_and_grad(keyword_only, wrt=("w", "scale"), backend=backend)
    for _ in range(2):  # the first call, then the fast path
        value, (dw, dscale) = f(x, w, scale=3.0)
        assert value == pytest.approx(keyword_only(x, w, scale=3.0))
        np.testing.assert_allclose(dw, 3.0 * x * (1 - np.tanh(x * w) ** 2))
        assert dscale == pytest.approx(np.sum(np.tanh(x * w)))
    assert f.compilations == 1
    for _ in range(2):  # Python's words for the model's own def, on either path
        with pytest.raises(TypeError, match=r"^keyword_only\(\).*(too many positional|takes 2 positional arg)"):
            f(x, w, 3.0)
        with pytest.raises(TypeError, match=r"^keyword_only\(\).*missing.*'scale'"):
            f(x, w)


def test_keyword_only_parameters_with_defaults(backend):
    x, w = np.array([0.5, -1.0, 2.0]), np.array([1.0, 0.5, -0.25])
    f = sb.grad(keyword_only_default, wrt="w", backend=backend)
    np.testing.assert_allclose(f(x, w), 2.0 * x * (1 - np.tanh(x * w) ** 2))
    np.testing.assert_allclose(f(x, w, squash=False, scale=0.5), 0.5 * x)
    np.testing.assert_allclose(f(x, w), 2.0 * x * (1 - np.tanh(x * w) ** 2))  # the fast path keeps defaults
    assert f.compilations == 2
    with pytest.raises(TypeError, match=r"^keyword_only_default\(\) takes 2 positional arguments but 3"):
        f(x, w, 2.0)


def test_positional_only_parameters(backend):
    x, w = np.array([0.5, -1.0]), np.array([1.0, 0.5])
    f = sb.value_and_grad(positional_only, wrt=("w", "b"), backend=backend)
    for _ in range(2):
        value, (dw, db) = f(x, w)
        assert value == pytest.approx(positional_only(x, w))
        np.testing.assert_allclose(dw, x * (1 - np.tanh(x * w + 0.5) ** 2))
        value, _ = f(x, w, b=0.25)
        assert value == pytest.approx(positional_only(x, w, b=0.25))
    for _ in range(2):  # as Python: positional-only parameters are not taken by name
        with pytest.raises(TypeError, match=r"^positional_only\(\).*positional.only"):
            f(x, w=w)


def test_every_kind_of_named_parameter_at_once(backend):
    x, w = np.array([0.5, -1.0]), np.array([1.0, 0.5])
    f = sb.value_and_grad(mixed, wrt=("x", "w"), backend=backend)
    value, _ = f(x, w, n=2)
    assert value == pytest.approx(mixed(x, w, n=2))
    value, _ = f(x, w=w, n=3, scale=2.0)
    assert value == pytest.approx(mixed(x, w, n=3, scale=2.0))
    step = sb.train_step(mixed, sb.optim.SGD(0.1), wrt="w", backend=backend)
    w2 = w.copy()
    assert step(x, w2, n=2) == pytest.approx(mixed(x, w, n=2))
    assert not np.array_equal(w2, w)


def test_exported_module_of_a_keyword_only_model(tmp_path):
    x, w = np.array([0.5, -1.0, 2.0]), np.array([1.0, 0.5, -0.25])
    f = sb.value_and_grad(keyword_only, wrt="w")
    want = f(x, w, scale=3.0)
    f.export(tmp_path / "kw.py")
    spec = importlib.util.spec_from_file_location("kw_export", tmp_path / "kw.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    value, dw = module.value_and_grad(x, w, scale=3.0)
    assert value == pytest.approx(want[0])
    np.testing.assert_allclose(dw, want[1])


def test_cli_binds_keyword_only_parameters(tmp_path, capsys):
    (tmp_path / "kw_models.py").write_text(inspect.getsource(keyword_only_default).join(["import numpy as np\n\n\n",
                                                                                         ""]))
    argv = ["explain", f"{tmp_path / 'kw_models.py'}:keyword_only_default", "--arg", "x=float64[3]",
            "--arg", "w=float64[3]", "--arg", "squash=False", "--wrt", "w"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "scale" in out and "tanh" not in out


def two_inputs(a, b, W):
    return np.sum(np.tanh(a @ W) * b)


def test_wrong_calls_after_the_first_read_as_the_model_s(backend):
    """The cached fast path has the model's parameters and name: Python's own TypeError for its def."""
    f = sb.value_and_grad(two_inputs, backend=backend)
    a, b, W = np.ones((2, 3)), np.ones((2, 2)), np.ones((3, 2))
    f(a, b, W)
    with pytest.raises(TypeError, match=r"^two_inputs\(\) missing 1 required positional argument: 'W'"):
        f(a, b)
    with pytest.raises(TypeError, match=r"^two_inputs\(\) got an unexpected keyword argument 'c'"):
        f(a, b, W, c=1.0)
    assert f.compilations == 1
