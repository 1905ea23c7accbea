"""The table of primitives: each registers its shape rule, adjoint and NumPy text.

Contract every primitive follows (a class, instantiated once, registered by name):

    infer(node)                  -> [(shape, dtype), ...]   one per output
    adjoint(node, gs, wants)     -> [Value | None, ...]     one per input
        gs[k] is the incoming gradient of output k (None when it is zero);
        wants[i] says whether input i needs a gradient. Rules build IR with the
        ops in primitives.ops, so they read like the math (`g @ b.T`).
    numpy(node, args, out)       -> [line, ...] or an expression string
        args are the printed names of the inputs, out the names of the outputs.

A primitive with no adjoint leaves `adjoint` undefined; reverse mode then raises
CompileError naming it.
"""
from __future__ import annotations

PRIMITIVES: dict[str, "Primitive"] = {}


class Primitive:
    name = "?"
    #: what explain prints after this primitive's gradient; formatted with the names of its outputs
    explain_note = ""

    def infer(self, node):
        raise NotImplementedError

    def adjoint(self, node, gs, wants):
        from ..errors import CompileError
        raise CompileError(f"`{self.name}` has no derivative rule", node.loc)

    def numpy(self, node, args, out):
        raise NotImplementedError(self.name)

    def describe(self, node) -> str:
        """A short human name for explain tables and graphs."""
        return self.name

    def __repr__(self):
        return f"<primitive {self.name}>"


def primitive(name: str):
    """Class decorator: instantiate and register a primitive under `name`."""

    def register(cls):
        cls.name = name
        PRIMITIVES[name] = instance = cls()
        return instance

    return register
