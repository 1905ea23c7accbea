"""What the language rejects, checked over the whole body before anything runs.

Rejection does not depend on the signature: a `try` in a branch that this
signature never takes is still an error, at its own line.
"""
from __future__ import annotations

import ast
import inspect

from ..errors import CompileError
from .source import Source

REJECTED_STATEMENTS = {
    ast.Try: ("`try`", "Remove it: the model must not depend on exceptions."),
    ast.With: ("`with`", "Remove it: models cannot use context managers."),
    ast.Raise: ("`raise`", "Check inputs before calling the model."),
    ast.Global: ("`global`", "Pass the value as a parameter."),
    ast.Nonlocal: ("`nonlocal`", "Pass the value as a parameter."),
    ast.Import: ("`import` inside the model", "Import at module level."),
    ast.ImportFrom: ("`import` inside the model", "Import at module level."),
    ast.ClassDef: ("a class definition inside the model", "Define helpers as module-level functions."),
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
    ast.SetComp: ("a set comprehension", "Use a list comprehension."),
    ast.DictComp: ("a dict comprehension", "Use a list comprehension or a `for` loop."),
    ast.Yield: ("`yield`", "A model returns one scalar."),
    ast.YieldFrom: ("`yield from`", "A model returns one scalar."),
    ast.Await: ("`await`", "Models are plain functions."),
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


def star_parameters_error(src):
    """The CompileError for a `*args` or `**kwargs` in `src`'s def, or None: a model and each helper
    has a fixed list of parameters, each one input of the generated code (and, for a model, of its
    exported functions, the CLI's --arg and `wrt`)."""
    a = src.node.args
    if not (a.vararg or a.kwarg):
        return None
    name = src.node.name
    named = [p.arg for p in a.posonlyargs + a.args]
    if a.vararg:
        example = ", ".join(named + [f"{a.vararg.arg}1", f"{a.vararg.arg}2"])
        return CompileError(f"`*{a.vararg.arg}` parameters are not supported", src.loc(src.node),
                            f"List every parameter by name: `def {name}({example})`; several ints or strings "
                            "that steer the model can come as one tuple parameter.")
    example = ", ".join(named + ["scale=1.0"])
    return CompileError(f"`**{a.kwarg.arg}` parameters are not supported", src.loc(src.node),
                        f"List every parameter by name, with a default for the optional ones: "
                        f"`def {name}({example})`.")


def check_parameters(fn):
    """CompileError at the def of a model with `*args` or `**kwargs`, before a call is bound to it.

    Only the flags of the code object are read on the way: the source is parsed when one is set.
    """
    if fn.__code__.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS):
        error = star_parameters_error(Source(fn))
        if error is not None:
            raise error
