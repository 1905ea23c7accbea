"""Nested `def`s and lambdas inside a model: values the tracer inlines at each call, as it inlines helpers.

A closure reads the enclosing function's names as they are when it is called
(Python's late binding), and the names its own body assigns are its own: reading
one of those before it is assigned is the CompileError Python's UnboundLocalError
would be at run time.
"""
from __future__ import annotations

import ast
import inspect

from ..errors import CompileError

_P = inspect.Parameter


class Closure:
    """A nested def or lambda: its node, the frame it was made in, and its signature (defaults computed)."""

    def __init__(self, node, frame, signature):
        self.node, self.frame, self.signature = node, frame, signature
        self.name = node.name if isinstance(node, ast.FunctionDef) else "<lambda>"
        self.locals = assigned_names(node)


def signature(arguments: ast.arguments, defaults, kw_defaults, name, loc) -> inspect.Signature:
    """The signature of a nested def or lambda, with its default values already computed (as `def` does)."""
    a = arguments
    if a.vararg or a.kwarg:
        star = f"*{a.vararg.arg}" if a.vararg else f"**{a.kwarg.arg}"
        raise CompileError(f"`{star}` parameters of `{name}` are not supported", loc,
                           "List every parameter by name.")
    positional = a.posonlyargs + a.args
    first_default = len(positional) - len(defaults)
    params = []
    for i, p in enumerate(positional):
        kind = _P.POSITIONAL_ONLY if i < len(a.posonlyargs) else _P.POSITIONAL_OR_KEYWORD
        params.append(_P(p.arg, kind, default=defaults[i - first_default] if i >= first_default else _P.empty))
    for p, d in zip(a.kwonlyargs, kw_defaults):
        params.append(_P(p.arg, _P.KEYWORD_ONLY, default=_P.empty if d is None else d))
    return inspect.Signature(params)


def assigned_names(node) -> frozenset:
    """The names a function's body binds (its locals), not looking into the functions and comprehensions
    it defines, whose names are their own."""
    if isinstance(node, ast.Lambda):
        return frozenset()
    found = set()
    todo = list(node.body)
    while todo:
        n = todo.pop()
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            found.add(n.id)
        elif isinstance(n, ast.FunctionDef):
            found.add(n.name)
            todo.extend(n.args.defaults + [d for d in n.args.kw_defaults if d is not None])
            continue
        elif isinstance(n, (ast.Lambda, ast.ListComp, ast.GeneratorExp, ast.SetComp, ast.DictComp)):
            continue
        todo.extend(ast.iter_child_nodes(n))
    return frozenset(found)
