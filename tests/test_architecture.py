"""The structure docs/architecture.md describes, checked: layers, one table of backends, no hidden imports."""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import symbackprop as sb
from symbackprop import backends
from symbackprop.backends import base  # noqa: F401  (backends.base below)

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(sb.__file__).resolve().parent
SOURCES = sorted(PACKAGE.rglob("*.py"))
#: function-level imports allowed: only where an optional dependency is imported where it is used
OPTIONAL_IMPORTS: set = {
    ("distributed.py", "import dask.array"),   # the `distributed` extra
    ("distributed.py", "import distributed"),
    ("distributed.py", "from tqdm import tqdm"),  # the progress bar, when the `examples` extra is installed
    ("dtypes.py", "import ml_dtypes as module"),  # bfloat16, the `bf16` extra
}


def _lint_imports(cwd):
    return subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                           "sys.exit(lint_imports_command())"], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """The package and its contracts, copied so that a test may plant an import in them."""
    where = tmp_path_factory.mktemp("layers")
    shutil.copytree(PACKAGE, where / "symbackprop", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", where / "pyproject.toml")
    return where


def test_the_import_contracts_hold():
    assert (ROOT / "symbackprop").is_dir(), "run from a checkout"
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout and "ignore_imports" not in (ROOT / "pyproject.toml").read_text()


@pytest.mark.parametrize("module, planted", [
    ("ir.py", "from symbackprop.primitives import ops"),                  # the IR reaching up to primitives
    ("primitives/shape.py", "from symbackprop.backends.numpy import rules"),  # a primitive printing code
    ("backends/numpy/writer.py", "from symbackprop.backends.llvm import lower"),  # one backend using another
    ("passes/dce.py", "from symbackprop.pipeline import stages"),           # a pass reaching for the pipeline
])
def test_an_upward_import_breaks_the_contracts(checkout, module, planted):
    path = checkout / "symbackprop" / module
    original = path.read_text()
    path.write_text(original + f"\n{planted}  # planted by the test\n")
    try:
        result = _lint_imports(checkout)
    finally:
        path.write_text(original)
    assert result.returncode != 0 and "BROKEN" in result.stdout, result.stdout
    importer = "symbackprop." + module.removesuffix(".py").replace("/", ".")
    assert importer in result.stdout, result.stdout


def test_no_function_level_imports():
    found = set()
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        found.add((str(path.relative_to(PACKAGE)), ast.unparse(node)))
    assert found <= OPTIONAL_IMPORTS, sorted(found - OPTIONAL_IMPORTS)


def _string_compares(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                items = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
                for item in items:
                    if isinstance(item, ast.Constant) and isinstance(item.value, str):
                        yield node, item.value


def test_no_backend_is_tested_by_name_outside_the_table():
    names = set(backends.NAMES)
    assert names == {"numpy", "llvm"}
    found = []
    for path in SOURCES:
        if path == PACKAGE / "backends" / "__init__.py":
            continue
        for node, text in _string_compares(ast.parse(path.read_text())):
            if text in names:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {ast.unparse(node)}")
    assert not found, found


def test_no_primitive_is_tested_by_name_outside_the_primitives():
    found = []
    for path in SOURCES:
        if path.parent.name == "primitives":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and any(
                    isinstance(side, ast.Attribute) and side.attr == "name" and "prim" in ast.unparse(side)
                    for side in [node.left, *node.comparators]):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {ast.unparse(node)}")
    assert not found, found


def test_every_backend_implements_the_interface():
    for name in backends.NAMES:
        backend = backends.get(name)
        assert backend.name == name
        assert isinstance(backend, backends.base.Backend)
        for method in ("build", "export", "check"):
            assert getattr(type(backend), method) is not getattr(backends.base.Backend, method) or method == "check", \
                (name, method)
        assert backend.exports and all(s.startswith(".") for s in backend.exports)
    suffixes = [s for name in backends.NAMES for s in backends.get(name).exports]
    assert len(suffixes) == len(set(suffixes)), "two backends claim one export suffix"


def test_an_unknown_backend_names_the_choices():
    with pytest.raises(ValueError, match=r"backend must be one of \('numpy', 'llvm'\), got 'cuda'"):
        sb.grad(lambda x: x, backend="cuda")
