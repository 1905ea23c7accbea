"""What the language rejects, checked over the whole body before anything runs.

Rejection does not depend on the signature: a `try` in a branch that this
signature never takes is still an error, at its own line.
"""
from __future__ import annotations

import ast

from ..errors import CompileError

REJECTED_STATEMENTS = {
    ast.While: ("a `while` loop", "Use `for i in range(n)` with a bound known at compile time."),
    ast.Try: ("`try`", "Remove it: the model must not depend on exceptions."),
    ast.With: ("`with`", "Remove it: models cannot use context managers."),
    ast.Raise: ("`raise`", "Check inputs before calling the model."),
    ast.Global: ("`global`", "Pass the value as a parameter."),
    ast.Nonlocal: ("`nonlocal`", "Pass the value as a parameter."),
    ast.Import: ("`import` inside the model", "Import at module level."),
    ast.ImportFrom: ("`import` inside the model", "Import at module level."),
    ast.ClassDef: ("a class definition inside the model", "Define helpers as module-level functions."),
    ast.FunctionDef: ("a nested function", "Define helpers as module-level functions and call them."),
    ast.AsyncFunctionDef: ("a nested async function", "Define helpers as module-level functions."),
    ast.Delete: ("`del`", "Just stop using the name."),
}
if hasattr(ast, "Match"):
    REJECTED_STATEMENTS[ast.Match] = ("`match`", "Use `if` on values known at compile time.")
if hasattr(ast, "TryStar"):
    REJECTED_STATEMENTS[ast.TryStar] = ("`try`", "Remove it: the model must not depend on exceptions.")
for _name in ("AsyncFor", "AsyncWith"):
    REJECTED_STATEMENTS[getattr(ast, _name)] = (f"`async {_name[5:].lower()}`", "Models are plain functions.")

REJECTED_EXPRESSIONS = {
    ast.Lambda: ("a lambda", "Define a module-level function and call it."),
    ast.ListComp: ("a list comprehension", "Use a `for` loop, with np.stack or np.concatenate to collect."),
    ast.SetComp: ("a set comprehension", "Use a `for` loop."),
    ast.DictComp: ("a dict comprehension", "Use a `for` loop."),
    ast.GeneratorExp: ("a generator expression", "Use a `for` loop, with np.stack or np.concatenate to collect."),
    ast.Yield: ("`yield`", "A model returns one scalar."),
    ast.YieldFrom: ("`yield from`", "A model returns one scalar."),
    ast.Await: ("`await`", "Models are plain functions."),
    ast.Dict: ("a dict", "Pass arrays as separate parameters."),
    ast.Set: ("a set", "Use a tuple."),
    ast.JoinedStr: ("an f-string", "Models compute numbers only."),
    ast.Starred: ("`*` unpacking", "Pass arguments one by one."),
}


def check_function(src):
    """Raise CompileError at the first construct outside the language in `src`'s body."""
    if getattr(src, "checked", False):
        return
    table = {**REJECTED_STATEMENTS, **REJECTED_EXPRESSIONS}
    found = [n for n in ast.walk(ast.Module(body=src.node.body, type_ignores=[])) if type(n) in table
             and not (isinstance(n, ast.Starred) and isinstance(n.ctx, ast.Store))]  # `a, *b = x`: the tracer's message
    if found:
        first = min(found, key=lambda n: (n.lineno, n.col_offset))
        what, hint = table[type(first)]
        raise CompileError(f"{what} is not supported", src.loc(first), hint)
    src.checked = True
