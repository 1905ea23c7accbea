"""The table of primitives: each registers its shape rule and adjoint.

Contract every primitive follows (a class, instantiated once, registered by name):

    infer(node)                  -> [(shape, dtype), ...]   one per output
    adjoint(node, gs, wants)     -> [Value | None, ...]     one per input
        gs[k] is the incoming gradient of output k (None when it is zero);
        wants[i] says whether input i needs a gradient. Rules build IR with the
        ops in primitives.ops, so they read like the math (`g @ b.T`).
    tangent(node, ts, batch)     -> [Value | None, ...]     one per output (forward mode)
        ts[i] is the tangent of input i (None when it is zero), of shape batch + the input's
        shape: `batch` is () for one direction, (n,) for n directions carried as a leading
        axis (a Jacobian's basis). Rules build IR with ops, as adjoints do.
    batch(node, ins, batched, n) -> [Value, ...]            one per output (sb.vmap, per_example_grad)
        ins[i] is input i rebuilt in the batched graph: with a leading batch axis of size n where
        batched[i] is True, as it was where False (some input is batched, else the node is copied);
        every output comes back with the leading batch axis (transforms/batching.py).
    describe(node)               -> str                     for explain tables and graphs
    flops(node)                  -> int                     the op-cost model: arithmetic of one application
    view                         (class attribute)          True when the result is a view: no bytes, no flops

How a primitive is computed is not written here: each backend keeps one table of
rules keyed by the primitive's class (RULES in numpy/rules.py, LOWERINGS in
llvm/lower.py), and nothing in this package imports a backend. `@primitive` makes
the decorated name the instance, so a backend finds the rule of `node.prim` under
`type(node.prim)`. Every primitive has a rule in every backend
(tests/test_backend_rules.py) unless it sets `rewritten_away = True`: the
compiler always rewrites it into other primitives before code is generated.

A primitive with no adjoint leaves `adjoint` undefined; reverse mode then raises
CompileError naming it (and forward mode, for `tangent`; batching, for `batch`).
"""
from __future__ import annotations

from ..errors import CompileError

PRIMITIVES: dict[str, "Primitive"] = {}


class Primitive:
    name = "?"
    #: True for a primitive always rewritten into others before code is generated: no backend needs a rule
    rewritten_away = False
    #: what explain prints after this primitive's gradient; formatted with the names of its outputs
    explain_note = ""
    #: the result reads its input's memory (reshape, transpose, a slice): it costs no bytes and no flops
    view = False

    def flops(self, node) -> int:
        """The op-cost model (transforms/recompute.py): one operation per element read or written."""
        if self.view:
            return 0
        return max([v.size for v in node.inputs] + [v.size for v in node.outputs] + [1])

    def infer(self, node):
        raise NotImplementedError

    def adjoint(self, node, gs, wants):
        raise CompileError(f"`{self.name}` has no derivative rule", node.loc)

    def tangent(self, node, ts, batch):
        raise CompileError(f"`{self.name}` has no forward-mode (tangent) rule", node.loc)

    def batch(self, node, ins, batched, n):
        raise CompileError(f"`{self.name}` has no batching rule: sb.vmap and sb.per_example_grad cannot map "
                           "over it", node.loc, "Call the function once per example, or keep the batched "
                           "arguments out of this operation.")

    def describe(self, node) -> str:
        """A short human name for explain tables and graphs."""
        return self.name

    def written(self, node, ins) -> str:
        """How explain writes a primitive that is rewritten away before code generation: as the model did."""
        return f"sb.{self.describe(node)}({', '.join(ins)})"

    def explain_text(self, node, names) -> str:
        """The note explain prints after this primitive's gradient (`names`: its outputs' names)."""
        return self.explain_note.format(*names)

    def __repr__(self):
        return f"<primitive {self.name}>"


def primitive(name: str):
    """Class decorator: instantiate and register a primitive under `name`."""

    def register(cls):
        cls.name = name
        PRIMITIVES[name] = instance = cls()
        return instance

    return register
