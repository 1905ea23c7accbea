"""Find a function's `def` in its module's source, parsed with `ast`, lines intact."""
from __future__ import annotations

import ast
import inspect
import linecache
import os
import threading
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


def _last_line(code) -> int:
    """The last source line any instruction of `code` (or of code nested in it) spans."""
    last = max((end for _, end, _, _ in code.co_positions() if end is not None), default=0)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            last = max(last, _last_line(c))
    return last


def _function_tree(path: str, stamp, text, fn):
    """The tree of `fn`'s module-level `def` alone (decorators included), with the module's line
    numbers; None when that cannot be cut out for sure (an indented def, or one whose last
    statement compiles to no instruction): the caller then parses the whole module.

    Parsing one function instead of its whole module is most of the cost of reading a model
    from a long file. The def runs from its first line (decorators included) to the last line its
    code spans; what follows must be module-level code, a comment, a blank line or the end.
    """
    first = fn.__code__.co_firstlineno
    key = (path, first)
    with _lock:
        hit = _cache.get(key)
        if hit and hit[0] == stamp:
            return hit[1], hit[2]
    lines = text.splitlines(keepends=True)
    last = _last_line(fn.__code__)
    if not 0 < first <= last <= len(lines) or lines[first - 1][:1] in (" ", "\t"):
        return None
    following = next((line for line in lines[last:] if line.strip() and not line.lstrip().startswith("#")), "")
    if following[:1] in (" ", "\t"):
        return None
    try:
        tree = ast.parse("".join(lines[first - 1:last]), filename=path)
    except (SyntaxError, ValueError):
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
            partial = _function_tree(path, *found_text, fn)
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
