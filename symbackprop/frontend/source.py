"""Find a function's `def` in its module's source, parsed with `ast`, lines intact."""
from __future__ import annotations

import ast
import inspect
import linecache
import os
import threading
import tokenize
import types

from ..errors import CompileError, Loc

_cache: dict = {}
_lock = threading.Lock()


def _read(path: str):
    """(stamp, text) of a source file, or of a notebook cell IPython keeps in linecache; None if neither."""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        return os.stat(path).st_mtime_ns, text
    lines = linecache.getlines(path)
    if lines:
        text = "".join(lines)
        return hash(text), text
    return None


def _module_tree(path: str, stamp, text):
    with _lock:
        hit = _cache.get(path)
        if hit and hit[0] == stamp:
            return hit[1], hit[2]
    tree = ast.parse(text, filename=path)
    lines = text.splitlines()
    with _lock:
        _cache[path] = (stamp, tree, lines)
    return tree, lines


def _function_tree(path: str, stamp, text, first: int):
    """The tree of the module-level `def` (decorators included) starting on line `first` alone, with the
    module's line numbers; None when that block does not parse on its own (an indented or one-line def).

    Parsing one function instead of its whole module is most of the cost of reading a model
    from a long file.
    """
    key = (path, first)
    with _lock:
        hit = _cache.get(key)
        if hit and hit[0] == stamp:
            return hit[1], hit[2]
    lines = text.splitlines(keepends=True)
    if not 0 < first <= len(lines) or lines[first - 1][:1] in (" ", "\t"):
        return None
    try:
        block = inspect.getblock(lines[first - 1:])
        tree = ast.parse("".join(block), filename=path)
    except (SyntaxError, ValueError, tokenize.TokenError):
        return None
    ast.increment_lineno(tree, first - 1)
    found = (tree, text.splitlines())
    with _lock:
        _cache[key] = (stamp, *found)
    return found


def _find_def(tree, fn):
    first = fn.__code__.co_firstlineno
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == fn.__name__:
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            if start == first or node.lineno == first:
                return node
    return None


class Source:
    """A parsed function: its `def` node, its file and the file's lines."""

    def __init__(self, fn: types.FunctionType):
        self.fn = fn
        name = getattr(fn, "__name__", repr(fn))
        try:
            path = inspect.getsourcefile(fn) or fn.__code__.co_filename
        except TypeError:
            path = None
        found_text = _read(path) if path else None
        if found_text is None:
            raise CompileError(
                f"cannot read the source of `{name}`",
                None,
                "Define the model with `def` in a .py file or a notebook cell (not in exec, the plain "
                "interactive prompt or a lambda).",
            )
        self.file = path
        first = fn.__code__.co_firstlineno
        found = None
        if fn.__name__ != "<lambda>" and not fn.__code__.co_freevars:
            partial = _function_tree(path, *found_text, first)
            if partial is not None:
                tree, self.lines = partial
                found = _find_def(tree, fn)
        if found is None:
            tree, self.lines = _module_tree(path, *found_text)
        if fn.__name__ == "<lambda>":
            raise CompileError("a lambda cannot be a model or a helper", Loc(path, first),
                               "Write it as a module-level `def`.")
        if fn.__code__.co_freevars:
            raise CompileError(f"`{name}` is a closure (it reads {', '.join(fn.__code__.co_freevars)} "
                               "from an enclosing function)", Loc(path, first),
                               "Define it at module level and pass those values as parameters.")
        if found is None:
            found = _find_def(tree, fn)
        if found is None:
            raise CompileError(f"cannot find the definition of `{name}` in {path}", None,
                               "Define the model as a module-level `def` and save the file before compiling.")
        self.node = found

    def loc(self, node) -> Loc:
        line = getattr(node, "lineno", self.node.lineno)
        text = self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""
        return Loc(self.file, line, text)

    def segment(self, node) -> str:
        try:
            return ast.unparse(node)
        except Exception:  # pragma: no cover - ast.unparse handles every parsed node
            return type(node).__name__
