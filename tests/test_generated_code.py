"""The compiler runs only code it generated, and exports only generated code.

The package is read with `ast`: no eval anywhere, and every exec compiles text
that one of our templates rendered (the generated module, the LLVM call wrapper,
the fast path). A new exec site fails here until it is reviewed and listed.
Then, dynamically: user-controlled strings (static arguments, module names)
reach generated text only where they cannot become code, and an exported module
is nothing but imports and function definitions.
"""
import ast
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

import symbackprop as sb

PACKAGE = Path(sb.__file__).resolve().parent
SOURCES = sorted(PACKAGE.rglob("*.py"))

#: (file, function) -> what it executes. Each one is checked below for where its text comes from.
EXEC_SITES = {
    ("backends/base.py", "load"): "generated source: a Program's .source, a rendered template, or a module "
                                  "of backends/numpy/module.py (which renders templates)",
    ("distributed.py", "_worker_namespace"): "the constant source of the functions Dask workers run (a module "
                                             "of their own, so that cloudpickle sends them by value)",
}
#: modules that import a user's model file (the CLI names one on its command line; unpickling a decorated
#: model imports the module it was pickled from, as pickle does for any function), never a string
MODULE_IMPORTS = {("cli.py", "load_model"), ("pipeline/pickling.py", "model_behind")}
#: imports of the package's own modules by a name from a constant table (the backends, loaded on first use)
OWN_IMPORTS = {("backends/__init__.py", "get")}
#: imports of a model the package writes itself: sb.distributed's update step, `apply_gradients` rendered
#: from a constant text with the model's parameter names (identifiers), whose gradient is the one given
GENERATED_MODELS = {("distributed.py", "_update_step")}
#: functions that return generated module text (each renders templates/numpy_module.py.j2)
MODULE_TEXT = {"numpy_module", "step_module", "export_python"}


def _functions(tree):
    """Each node with the name of the function it sits in."""
    def walk(node, fn):
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else fn
            yield child, inner
            yield from walk(child, inner)
    return walk(tree, None)


def _calls(name):
    """(file, function, call node) for every call of the builtin `name` in the package."""
    found = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        for node, fn in _functions(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name:
                found.append((str(path.relative_to(PACKAGE)), fn, node))
    return found


def test_nothing_is_eval_ed():
    for name in ("eval", "__import__", "breakpoint"):
        assert _calls(name) == [], f"{name}() in the package"
    for path in SOURCES:
        text = path.read_text()
        assert "import pickle" not in text and "import marshal" not in text and "from pickle" not in text, path


def test_every_exec_runs_a_compiled_rendering_of_ours():
    sites = {(path, fn) for path, fn, _ in _calls("exec")}
    assert sites == set(EXEC_SITES), f"exec sites changed: {sites ^ set(EXEC_SITES)}; review and list them"
    for path, fn, call in _calls("exec"):
        # exec(compile(text, "<symbackprop ...>", "exec"), namespace): never a bare string
        inner = call.args[0]
        assert isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name) and inner.func.id == "compile", \
            f"{path}:{call.lineno}: exec of something not compiled here"
        assert isinstance(inner.args[2], ast.Constant) and inner.args[2].value == "exec"
        filename = inner.args[1]
        assert isinstance(filename, (ast.Name, ast.JoinedStr)), f"{path}:{call.lineno}"
    # the fast path's text is rendered from the template in the same function
    tree = ast.parse((PACKAGE / "pipeline" / "specialiser.py").read_text())
    fast_path = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "install_fast_path")
    text_sources = [n.value for n in ast.walk(fast_path) if isinstance(n, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "text" for t in n.targets)]
    assert text_sources and all(isinstance(v, ast.Call) and getattr(v.func, "id", None) == "render"
                                for v in text_sources)


def test_load_is_only_given_generated_text():
    """backends.base.load(source, ...) is called with a Program's source or a template rendering, nothing else."""
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        names = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 and (node.module or "").endswith("base") for alias in node.names if alias.name == "load"}
        if path.name == "base.py":
            names.add("load")
        for fn in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
            rendered = {t.id for n in ast.walk(fn) if isinstance(n, ast.Assign)
                        and isinstance(n.value, ast.Call) and (getattr(n.value.func, "id", None) == "render"
                                                                or getattr(n.value.func, "attr", None) in MODULE_TEXT)
                        for t in n.targets if isinstance(t, ast.Name)}
            for call in [n for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                         and n.func.id in names and n.args]:
                source = call.args[0]
                generated = (isinstance(source, ast.Attribute) and source.attr == "source") or \
                            (isinstance(source, ast.Name) and source.id in rendered) or \
                            (isinstance(source, ast.Call) and getattr(source.func, "id", None) == "render")
                assert generated, f"{path.name}:{call.lineno}: load() of {ast.unparse(source)}"


def test_only_the_cli_imports_a_model_file():
    sites = set()
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        for node, fn in _functions(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in ("exec_module", "import_module", "run_path", "run_module"):
                sites.add((str(path.relative_to(PACKAGE)), fn))
    assert sites <= MODULE_IMPORTS | OWN_IMPORTS | GENERATED_MODELS, sites
    tree = ast.parse((PACKAGE / "backends" / "__init__.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", None) == "import_module"]
    # the backend table's modules: the name comes from the constant table, never from a caller
    assert all(isinstance(c.args[0], ast.Name) and c.args[0].id == "module" for c in calls), calls


# ---- user strings in generated text --------------------------------------------------------------

def by_mode(x, mode):
    return np.sum(x) if mode == "sum" else np.sum(x * x)


HOSTILE = ['"""; raise SystemExit("ran"); _ = """', "\\", "'''", 'a"b', "\n#", "x\u2028y", "*/ int main(){} /*"]


@pytest.mark.parametrize("value", HOSTILE)
def test_static_strings_never_become_code(backend, value, tmp_path):
    f = sb.grad(by_mode, backend=backend)
    np.testing.assert_array_equal(f(np.ones(2), value), [2.0, 2.0])
    if backend == "numpy":
        tree = ast.parse(f.source)
        assert repr(value) in ast.get_docstring(tree, clean=False)  # the docstring says what was specialised
        _only_definitions(tree)
        path = f.export(tmp_path / "exported.py")
        module = _only_definitions(ast.parse(Path(path).read_text()))
        assert module is not None


def _only_definitions(tree):
    """A generated module: a docstring, imports of numpy/math, function definitions, and the argument checks'
    constants (`_ONE = "text"`, `_float64 = np.dtype("float64")`); nothing else that runs."""
    body = list(tree.body)
    assert isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
    for node in body[1:]:
        if isinstance(node, ast.Import):
            assert {a.name for a in node.names} <= {"numpy", "math"}, ast.unparse(node)
        elif isinstance(node, ast.Assign):
            text = ast.unparse(node)
            assert re.fullmatch(r"_\w+ = ('[^'\\]*'|np\.dtype\('\w+'\)|np\.ndarray)", text), text
        else:
            assert isinstance(node, ast.FunctionDef), ast.unparse(node)[:200]
    return tree


def test_exported_modules_import_only_numpy_and_define_only_functions(tmp_path):
    import models
    from test_gradients import CASES
    for name in ("mlp", "loop_with_helpers", "math_scalar", "softmax_attention", "indexing"):
        model, make_args, wrt = CASES[name]
        f = sb.value_and_grad(model, wrt=wrt)
        args = make_args()
        path = f.export(tmp_path / f"{name}.py", *args)
        _only_definitions(ast.parse(Path(path).read_text()))
        # it runs on its own, without symbackprop, and agrees
        spec = importlib.util.spec_from_file_location(f"exported_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        value, grads = module.value_and_grad(*args)
        want_value, want = f(*args)
        np.testing.assert_allclose(value, want_value, rtol=1e-12)
        assert models is not None


def test_llvm_ir_mentions_user_strings_only_in_comments(tmp_path):
    f = sb.grad(by_mode, backend="llvm")
    f(np.ones(2), HOSTILE[0])
    path = f.export(tmp_path / "model.ll")
    text = Path(path).read_text()
    for line in text.splitlines():
        if "SystemExit" in line:
            assert line.lstrip().startswith(";"), line
    import llvmlite.binding as llvm
    llvm.parse_assembly(text).verify()


def test_c_headers_keep_static_strings_inside_comments(tmp_path):
    """A static argument "*/ int x; /*" closed the header's comment and declared `int x;` in C."""
    f = sb.grad(by_mode, backend="llvm")
    f(np.ones(2), "*/ int injected; /*")
    f.export(tmp_path / "model.so")
    header = (tmp_path / "model.h").read_text()
    code = "\n".join(line.split("/*")[0] for line in header.splitlines() if not line.lstrip().startswith("/*"))
    assert "injected" not in code
    for line in header.splitlines():
        if "injected" in line:
            assert line.count("*/") == 1 and line.rstrip().endswith("*/"), line
