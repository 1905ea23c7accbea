"""The fuzzer: random programs of the language (tests/fuzzgen.py) through both backends.

For every valid program: both backends agree with plain NumPy on the value and
with each other on the gradients (float64 to 1e-10 relative, float32 to float32
tolerances, and float32 gradients agree with the float64 ones), gradients agree
with central differences (float64, tests/gradcheck.py; a point with a kink inside
the step is skipped), compiling twice gives the same code, inputs are not
modified, and only a documented exception ever escapes. Programs made invalid
on purpose get a CompileError at the line that was broken, or a TypeError /
ValueError at call time.

CI runs a short derandomized profile. The long one, stopping at the first
failure (which hypothesis shrinks):

    SYMBACKPROP_FUZZ=5000 python -m pytest tests/test_fuzz.py

or collecting every failure in a directory, with progress and throughput per backend (tests/fuzz.py):

    python -m tests.fuzz --examples 5000 --seed 1 --backend both --out /tmp/fuzz
"""
import ast
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, note, settings, strategies as st

import symbackprop as sb
import fuzzgen

LONG = int(os.environ.get("SYMBACKPROP_FUZZ", "0"))
#: the CI profile: valid programs on both backends, and programs broken on purpose
CI_PROGRAMS, CI_BROKEN = 30, 30
#: and programs with value-dependent control flow
CI_REGIONS = 20


def _settings(ci_examples):
    return settings(max_examples=LONG or ci_examples, deadline=None, derandomize=not LONG,
                    database=None if not LONG else settings.default.database, print_blob=True,
                    suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@_settings(CI_PROGRAMS)
@given(data=st.data())
def test_random_valid_programs(workdir, data):
    program = fuzzgen.generate(fuzzgen.DataChooser(data))
    note(program.describe())
    event(f"dtype {program.dtype}")
    for feature in sorted(program.features):
        event(f"uses {feature}")
    try:
        fuzzgen.check(program, workdir)
    except fuzzgen.Skip as why:
        event(f"skipped: {why}")


@_settings(CI_REGIONS)
@given(data=st.data())
def test_random_programs_with_value_dependent_control_flow(workdir, data):
    """Programs drawn with value-dependent `if`, `while` and `break` far more often (fuzzgen.generate's
    `regions`), at points whose conditions keep a margin from their thresholds, on both backends."""
    program = fuzzgen.generate(fuzzgen.DataChooser(data), regions=True)
    note(program.describe())
    for feature in sorted(program.features & fuzzgen.REGION_FEATURES):
        event(f"uses {feature}")
    try:
        fuzzgen.check(program, workdir)
    except fuzzgen.Skip as why:
        event(f"skipped: {why}")


def test_loop_thresholds_stop_the_loop_at_each_possible_iteration():
    """A `while q > t` stops at the first q <= t: on these values it can stop at iteration 0, 1, 3 or 4 (2.5 then
    3.0: no threshold stops it at 3.0 but not at 2.5), or never; the thresholds keep a margin from every q."""
    qs = [4.0, 2.5, 3.0, 1.0, 0.5]
    stops = set()
    for pick in range(8):
        site = fuzzgen.Site(0, "cmp", ">", "while", pick=pick, frac=0.2)
        t = site.threshold(qs)
        stops.add(next((j for j, q in enumerate(qs) if not q > t), None))
        assert min(abs(q - t) for q in qs) >= fuzzgen.MARGIN * max(1.0, abs(t))
    assert stops == {0, 1, 3, 4, None}


def test_conditions_are_written_with_their_thresholds():
    sites = [fuzzgen.Site(0, "cmp", "<", "if"), fuzzgen.Site(1, "any", ">", "if"), fuzzgen.Site(2, "all", "<", "if")]
    text = "if _c(0, np.sum(f(x, (y)))) and not _c(1, v2) or _c(2, w[0]):"
    assert fuzzgen.written(text, sites, {0: 0.5, 1: -1.25, 2: 2.0}) == \
        "if np.sum(f(x, (y))) < 0.5 and not np.any(v2 > -1.25) or np.all(w[0] < 2.0):"


def _backend(program, data):
    """A backend to call `program` on."""
    return data.draw(st.sampled_from(["numpy", "llvm"]))


# ---- programs broken on purpose -----------------------------------------------------------

#: (statement inserted into the model, words the message must contain); {x} is an array parameter
REJECTED_LINES = [
    # a condition on more than one element (an `if` or `while` on a 0-d value is in the language)
    ("while np.stack([{x}, {x}]) > 0:\n    pass", "`while` on an array value"),
    ("if np.stack([{x}, {x}]) > 0:\n    {x} = {x} * 2", "`if` on an array value"),
    ("t = {x} * 2 if np.stack([{x}, {x}]) > 0 else {x}", "on an array value"),
    ("assert {x} > 0", "`assert` on an array value"),
    ("print({x})", "`print()`"),
    ("{x}[0][0] = 1.0", "is not supported"),
    ("{x}.shape = (1,)", "assigning to an attribute"),
    ("t = {{k: {x} for k in 'ab'}}", "a dict comprehension"),
    ("t = np.median({x})", "`np.median` is not supported"),
    ("t = np.tahn({x})", "`np.tahn` is not supported"),
    ("try:\n    pass\nexcept Exception:\n    pass", "`try`"),
    ("with open('f') as fh:\n    pass", "`with`"),
    ("raise ValueError('no')", "`raise`"),
    ("global G", "`global`"),
    ("del {x}", "`del`"),
    ("import os", "`import` inside the model"),
    ("t = {x}[{x} > 0]", "boolean-mask indexing"),
    ("t = {x}[[0.5]]", "a list index must hold whole numbers"),
    ("t = np.linalg.svd({x})", "`np.linalg.svd` is not supported"),
    ("t = {x}.astype(np.float32)", "`.astype`"),
    ("t = {x} // 2", "`//` on arrays"),
    ("t = (np.stack([{x}, {x}]) > 0) and ({x} < 1)", "`and` on array values"),
    ("t = not np.stack([{x}, {x}])", "`not` on an array"),
    ("t = undefined_name + 1", "name `undefined_name` is not defined"),
    ("t = np.sum({x}, dtype=np.float64)", "dtype="),
    ("t = f'{{{x}}}'", "f-string"),
    ("t = {{1, 2}}", "a set"),
    ("t = {x} is None", "`Is` comparison"),
    ("t = {x}[0:{x}]", "slice bounds"),
    ("t = int({x})", "int() of an array"),
    ("for u in range({x}):\n    pass", "needs values known at compile time"),
]


def _insert(source, line_index, text):
    """`text` inserted as a statement of the model before top-level statement `line_index`."""
    tree = ast.parse(source)
    model = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "model")
    stmt = model.body[line_index]
    lines = source.split("\n")
    at = stmt.lineno - 1
    indent = " " * stmt.col_offset
    new = [indent + t for t in text.split("\n")]
    return "\n".join(lines[:at] + new + lines[at:]) + "", at + 1


@_settings(CI_BROKEN)
@given(data=st.data())
def test_programs_broken_in_the_source_raise_compile_error_at_the_line(workdir, data):
    program = fuzzgen.generate(fuzzgen.DataChooser(data))
    text, words = data.draw(st.sampled_from(REJECTED_LINES))
    x = program.params[0].name
    model_body = next(n for n in ast.parse(program.source).body if isinstance(n, ast.FunctionDef)
                      and n.name == "model").body
    position = data.draw(st.integers(0, len(model_body) - 1))
    source, line = _insert(program.source, position, text.format(x=x))
    note(source)
    module, path = fuzzgen.load(source, workdir, "broken")
    backend = _backend(program, data)
    f = sb.value_and_grad(module.model, wrt=program.wrt, backend=backend)
    with pytest.raises(sb.CompileError) as info:
        f(*program.arguments())
    assert info.value.file == str(path) and info.value.line == line, str(info.value)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert words in str(info.value), str(info.value)


def _broken_call(program, args, kind, data):
    """Arguments (and the exception type expected) for one way of calling wrongly."""
    arrays = [i for i, p in enumerate(program.params) if p.kind == "array" and p.shape]
    wrt = [i for i in program.wrt_indices if program.params[i].kind == "array" and program.params[i].shape]
    args = list(args)
    if kind == "missing":
        return args[:-1], TypeError, None
    if kind == "extra":
        return args + [np.ones(2)], TypeError, None
    if kind in ("strings", "objects", "ints", "list", "complex") and wrt:
        i = data.draw(st.sampled_from(wrt))
        x = args[i]
        args[i] = {"strings": lambda: np.full(x.shape, "a"), "objects": lambda: np.array(x, dtype=object),
                   "ints": lambda: np.ones(x.shape, dtype=np.int64), "list": lambda: x.tolist(),
                   "complex": lambda: x.astype(np.complex128)}[kind]()
        return args, TypeError, program.params[i].name
    if kind == "shape" and arrays:
        i = data.draw(st.sampled_from(arrays))
        shape = list(args[i].shape)
        axis = data.draw(st.integers(0, len(shape) - 1))
        shape[axis] += data.draw(st.sampled_from([1, 2]))
        args[i] = np.resize(args[i], shape)
        return args, None, program.params[i].name
    return None


@_settings(CI_BROKEN)
@given(data=st.data())
def test_programs_called_wrongly_raise_type_or_value_error(workdir, data):
    program = fuzzgen.generate(fuzzgen.DataChooser(data))
    note(program.describe())
    module, path = fuzzgen.load(program.source, workdir, "called")
    kind = data.draw(st.sampled_from(["missing", "extra", "strings", "objects", "ints", "list", "complex",
                                      "shape", "shape"]))
    broken = _broken_call(program, program.arguments(), kind, data)
    if broken is None:
        return
    args, expected, name = broken
    backend = _backend(program, data)
    f = sb.value_and_grad(module.model, wrt=program.wrt, backend=backend)
    if expected is not None:
        with pytest.raises(expected) as info:
            f(*args)
        assert not isinstance(info.value, sb.CompileError)
        if name is not None:
            assert f"`{name}`" in str(info.value), str(info.value)
        return
    # another shape: whatever plain NumPy does, the compiled function does
    try:
        want = fuzzgen._call(module.model, args)
    except (ValueError, IndexError) as e:
        note(f"plain NumPy: {type(e).__name__}: {e}")
        with pytest.raises(ValueError) as info:
            f(*args)
        assert not isinstance(info.value, sb.CompileError)
        assert str(info.value).startswith(f"{path}:"), str(info.value)  # names the line
        return
    value, _ = f(*args)
    if np.isfinite(want):
        np.testing.assert_allclose(value, want, rtol=1e-9 if program.dtype == "float64" else 2e-3,
                                   atol=1e-9 * max(1.0, abs(float(want))))
