"""What a rejected name's message proposes (frontend/suggest.py), helpers called through their
module, and `symbackprop docs`, which the messages point to.

A suggestion is accepted by the language and related in meaning: a rewrite from a short table,
or, for a name the module does not have at all, the accepted names a typo away from it.
"""
import importlib
import re
import sys
import textwrap

import numpy as np
import pytest

import symbackprop as sb
from symbackprop import cli
from symbackprop.frontend import namespace, suggest


def message(model, *args):
    with pytest.raises(sb.CompileError) as info:
        sb.value_and_grad(model)(*args)
    return str(info.value)


def uses_argwhere(x):
    return np.sum(x * np.argwhere(x))


def uses_argmax(x):
    return np.sum(x * np.argmax(x))


def uses_argmin(x):
    return np.sum(x * np.argmin(x))


def misspells_tanh(x):
    return np.sum(np.tahn(x))


def misspells_maximum(x):
    return np.sum(np.maximun(x, 0.0))


def uses_a_different_function(x):
    return np.sum(np.median(x))


def test_no_unrelated_function_is_proposed():
    """The issue's examples: np.argwhere is no np.arcsin, np.median no typo."""
    x = np.ones(3)
    text = message(uses_argwhere, x)  # (np.argsort, the example, is in the language now)
    assert "arcsin" not in text and "Did you mean" not in text
    for model, function in ((uses_argmax, np.argmax), (uses_argmin, np.argmin)):  # in the language now
        x = np.array([0.5, 2.0, -1.0])
        value, grad = sb.value_and_grad(model)(x)
        assert value == pytest.approx(np.sum(x * function(x))) and np.array_equal(grad, np.full(3, function(x)))
    x = np.ones(3)
    text = message(uses_a_different_function, x)  # a real NumPy function: another function, not a typo
    assert "Did you mean" not in text and "symbackprop docs language" in text


def test_typos_get_the_accepted_names_a_slip_away():
    x = np.ones(3)
    assert "Did you mean np.tanh, np.tan?" in message(misspells_tanh, x)
    assert "Did you mean np.maximum?" in message(misspells_maximum, x)
    assert suggest.typo_matches("sqr", namespace.MATH) == ["sqrt"]
    assert suggest.typo_matches("exponential", namespace.NUMPY) == []


@pytest.mark.parametrize("a, b, distance", [
    ("tahn", "tanh", 1), ("tan", "tanh", 1), ("maximun", "maximum", 1), ("arange", "arctan", 4),
    ("argmax", "amax", 2), ("", "abc", 3), ("abc", "abc", 0), ("ca", "abc", 3),
])
def test_edit_distance(a, b, distance):
    assert suggest.edit_distance(a, b, limit=5) == distance
    assert suggest.edit_distance(a, b, limit=0) == (0 if distance == 0 else 1)


def test_real_numpy_functions_never_get_spelling_guesses():
    for name in dir(np):
        if name.startswith("_") or name in namespace.NUMPY or name in namespace.NUMPY_CONSTANTS:
            continue
        hint = suggest.module_hint("np", name, namespace.NUMPY, exists=True)
        assert "Did you mean" not in hint, name
        assert hint.endswith(suggest.DOCS_HINT)


def _mentioned(text):
    """The np./math. names and array methods a hint asks the reader to write."""
    text = re.sub(r"np\.linalg\.\w+", "", text)  # the function the hint replaces
    np_names = set(re.findall(r"\bnp\.([A-Za-z_]\w*)", text))
    math_names = set(re.findall(r"\bmath\.([A-Za-z_]\w*)", text))
    methods = set(re.findall(r"\b[a-z]\w*\.([a-z_]\w*)\(", text)) - np_names - math_names
    methods -= {name for name in methods if re.search(rf"\b(np|math)\.{name}\(", text)}
    return np_names, math_names, methods


@pytest.mark.parametrize("table", ["NUMPY", "NUMPY_MODULES", "MATH", "METHODS", "LIST_ARGUMENTS"])
def test_every_rewrite_names_only_what_the_language_accepts(table):
    entries = getattr(suggest, table)
    for key, text in entries.items():
        text = " ".join(text) if isinstance(text, tuple) else text
        np_names, math_names, methods = _mentioned(text)
        np_names -= {key.split(".")[-1], "linalg", "einsum", "arange", "argmax", "argmin"}  # the name itself
        math_names.discard(key)
        assert np_names <= set(namespace.NUMPY) | set(namespace.NUMPY_CONSTANTS), (key, np_names)
        assert math_names <= set(namespace.MATH) | set(namespace.MATH_CONSTANTS), (key, math_names)
        assert methods <= set(namespace.METHODS) | {key}, (key, methods)


# the rewrites of the table, as models: each computes what the NumPy function does
def norm(w):
    return np.sqrt(np.sum(w * w))


def norm_rows(w):
    return np.sum(np.sqrt(np.sum(w * w, axis=1)))


def variance(x):
    return np.mean((x - np.mean(x)) ** 2)


def deviation(x):
    return np.sqrt(np.mean((x - np.mean(x)) ** 2))


def product(x):
    return np.exp(np.sum(np.log(x)))


def differences(x):
    return np.sum((x[1:] - x[:-1]) * x[1:])


def vdot(a, b):
    return np.sum(a * b)


def log2(x):
    return np.sum(np.log(x) / np.log(2))


def log10(x):
    return np.sum(np.log(x) / np.log(10))


def exp2(x):
    return np.sum(2.0 ** x)


def cbrt(x):
    return np.sum(np.sign(x) * np.abs(x) ** (1 / 3))


def hypot(a, b):
    return np.sum(np.sqrt(a * a + b * b))


def logaddexp(a, b):
    return np.sum(np.maximum(a, b) + np.log1p(np.exp(-np.abs(a - b))))


def sinc(x):
    return np.sum(np.where(x != 0, np.sin(np.pi * x) / (np.pi * x), 1.0))


def flipped(x, w):
    return np.sum(x[::-1] * w)


def tiled(x, w):
    return np.sum(np.concatenate([x, x, x]) * w)


def repeated(x, w):
    return np.sum(np.stack([x, x, x], axis=1).reshape(-1) * w)


def argmax_mask(x, w):
    return np.sum(np.where(x == np.max(x, axis=-1, keepdims=True), w, 0.0))


def relu(x):
    return np.sum(np.maximum(x, 0))


def masked_mean(x, mask):
    return np.sum(mask * x) / np.sum(mask)


def softmax_first(z):
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))
    return np.sum((e / np.sum(e, axis=-1, keepdims=True))[0])


def _positive(n):
    return np.linspace(0.3, 2.1, n)


REWRITES = [
    (norm, lambda w: np.linalg.norm(w), [_positive(4)]),
    (norm_rows, lambda w: np.sum(np.linalg.norm(w, axis=1)), [_positive(6).reshape(2, 3)]),
    (variance, np.var, [_positive(5)]),
    (deviation, np.std, [_positive(5)]),
    (product, np.prod, [_positive(4)]),
    (differences, lambda x: np.sum(np.diff(x) * x[1:]), [_positive(4)]),
    (vdot, np.vdot, [_positive(3), _positive(3)[::-1].copy()]),
    (log2, lambda x: np.sum(np.log2(x)), [_positive(3)]),
    (log10, lambda x: np.sum(np.log10(x)), [_positive(3)]),
    (exp2, lambda x: np.sum(np.exp2(x)), [_positive(3)]),
    (cbrt, lambda x: np.sum(np.cbrt(x)), [_positive(3) - 1.0]),
    (hypot, lambda a, b: np.sum(np.hypot(a, b)), [_positive(3), _positive(3) - 1.0]),
    (logaddexp, lambda a, b: np.sum(np.logaddexp(a, b)), [_positive(3) * 30, _positive(3)[::-1] * 30]),
    (sinc, lambda x: np.sum(np.sinc(x)), [_positive(3) - 0.3]),
    (flipped, lambda x, w: np.sum(np.flip(x) * w), [_positive(3), _positive(3) ** 2]),
    (tiled, lambda x, w: np.sum(np.tile(x, 3) * w), [_positive(2), _positive(6)]),
    (repeated, lambda x, w: np.sum(np.repeat(x, 3) * w), [_positive(2), _positive(6)]),
    (argmax_mask, lambda x, w: w[np.argmax(x)], [_positive(4), _positive(4) ** 2]),
    (relu, lambda x: np.sum(np.maximum(x, 0)), [_positive(4) - 1.0]),
    (masked_mean, lambda x, mask: np.nanmean(np.where(mask > 0, x, np.nan)), [_positive(4), np.array([1.0, 0, 1, 1])]),
    (softmax_first, lambda z: np.sum(np.exp(z[0]) / np.sum(np.exp(z[0]))), [_positive(6).reshape(2, 3)]),
]


@pytest.mark.parametrize("rewrite, numpy_function, args", REWRITES, ids=[r[0].__name__ for r in REWRITES])
def test_the_rewrites_compile_and_compute_what_numpy_does(backend, rewrite, numpy_function, args):
    value, _ = sb.value_and_grad(rewrite, backend=backend)(*args)
    assert value == pytest.approx(numpy_function(*args), rel=1e-12)


def test_rewrites_name_the_compiled_forms():
    assert "np.sum(a * b)" in suggest.NUMPY["vdot"]
    assert "a @ b @ c" in suggest.NUMPY["linalg.multi_dot"]
    assert "np.sin(np.pi * x)" in suggest.NUMPY["sinc"]


def sums_a_list(a, b):
    return np.sum([np.sum(a), np.sum(b)])


def maximum_of_a_list(a, b):
    return np.max((a, b))


def sums_numbers(a):
    return np.sum(a) * np.sum([1.0, 2.0]) + np.mean((1.0, 3.0), axis=0)


def dot_of_a_list(a, b):
    return np.sum(np.dot([a, b], b))


def test_reductions_of_lists():
    a, b = np.ones(3), np.full(3, 2.0)
    text = message(sums_a_list, a, b)
    assert "`np.sum` of a list of arrays is not supported" in text
    assert "np.sum(np.stack([a, b]))" in text and "a + b" in text
    text = message(maximum_of_a_list, a, b)
    assert "`np.max` of a tuple of arrays" in text and "np.maximum(a, b)" in text
    assert "np.dot(np.stack([a, b]), ...)" in message(dot_of_a_list, a, b)
    value, g = sb.value_and_grad(sums_numbers)(a)  # numbers: computed as NumPy does
    assert value == 3 * 3.0 + 2.0
    np.testing.assert_allclose(g, [3.0] * 3)


# ---- helpers through their module -----------------------------------------------------

HELPERS = '''\
import numpy as np

SCALE = 0.5
LIMITS = (0.0, 1.0)


def gelu(x):
    return 0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x ** 3)))


def scaled(x):
    return inner(x) * SCALE


def inner(x):
    return np.tanh(x)


def looping(x, n=2):
    for _ in range(n):
        x = np.sin(x)
    return x
'''

MODEL = '''\
import numpy as np

import {helpers} as helpers
import {helpers}
from {helpers} import gelu


def through_module(x, w):
    h = helpers.gelu(x * w) + helpers.scaled(x) * helpers.LIMITS[1]
    return np.sum(h * helpers.SCALE) + np.sum({helpers}.looping(w, n=3))


def imported(x, w):
    return np.sum(gelu(x * w))


def typo(x, w):
    return np.sum(helpers.gleu(x))


def array_attribute(x, w):
    return np.sum(x * helpers.np.tanh(w))
'''


@pytest.fixture(scope="module")
def user_modules(tmp_path_factory):
    d = tmp_path_factory.mktemp("user_modules")
    (d / "sb_user_helpers.py").write_text(HELPERS)
    (d / "sb_user_model.py").write_text(MODEL.format(helpers="sb_user_helpers"))
    sys.path.insert(0, str(d))
    try:
        yield importlib.import_module("sb_user_model")
    finally:
        sys.path.remove(str(d))
        sys.modules.pop("sb_user_model", None)
        sys.modules.pop("sb_user_helpers", None)


def _gelu(x):
    return 0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x ** 3)))


def test_helpers_called_through_their_module_are_inlined(backend, user_modules):
    x, w = np.array([0.5, -1.0, 2.0]), np.array([1.0, 0.5, -0.25])
    f = sb.value_and_grad(user_modules.through_module, wrt=("x", "w"), backend=backend)
    value, (dx, dw) = f(x, w)
    w3 = np.sin(np.sin(np.sin(w)))
    want = np.sum((_gelu(x * w) + np.tanh(x) * 0.5) * 0.5) + np.sum(w3)
    assert value == pytest.approx(want, rel=1e-12)
    eps = 1e-6
    numeric = [(user_modules.through_module(x + eps * e, w) - user_modules.through_module(x - eps * e, w)) / (2 * eps)
               for e in np.eye(3)]
    np.testing.assert_allclose(dx, numeric, rtol=1e-6)
    value_imported, _ = sb.value_and_grad(user_modules.imported, backend=backend)(x, w)
    assert value_imported == pytest.approx(np.sum(_gelu(x * w)), rel=1e-12)
    value, _ = sb.value_and_grad(user_modules.array_attribute, backend=backend)(x, w)
    assert value == pytest.approx(np.sum(x * np.tanh(w)))


def test_a_misspelled_module_function_gets_the_typo_hint(user_modules):
    text = message(user_modules.typo, np.ones(3), np.ones(3))
    assert "module `helpers` has no attribute `gleu`" in text
    assert "Did you mean helpers.gelu?" in text
    assert "sb_user_model.py:" in text


# ---- the documentation the messages point to ---------------------------------------------

def test_messages_point_to_a_docs_topic_the_cli_prints():
    topics = re.findall(r"`symbackprop docs (\w+)`", suggest.DOCS_HINT)
    assert topics and set(topics) <= set(cli.DOC_TOPICS)


@pytest.mark.parametrize("topic", list(cli.DOC_TOPICS))
def test_docs_command_prints_each_document(topic, capsys):
    assert cli.main(["docs", topic]) == 0
    out = capsys.readouterr().out
    assert out == (cli.docs_dir() / f"{topic}.md").read_text(encoding="utf-8")
    assert out.startswith("# ")


def test_docs_command_lists_the_topics(capsys):
    assert cli.main(["docs"]) == 0
    out = capsys.readouterr().out
    for topic in cli.DOC_TOPICS:
        assert re.search(rf"^  {topic}\s", out, re.M), out
    with pytest.raises(SystemExit) as exc:
        cli.main(["docs", "nope"])
    assert exc.value.code == 2


def test_the_language_document_covers_what_the_messages_name():
    text = (cli.docs_dir() / "language.md").read_text(encoding="utf-8")
    for phrase in ("Powers at a zero base", "keyword-only", "`*args`, `**kwargs`", "`helpers.gelu(x)`"):
        assert phrase in text, phrase
    assert textwrap.dedent(text) == text
