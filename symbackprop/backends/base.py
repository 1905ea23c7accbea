"""The interface every backend implements, and loading generated Python source.

A backend turns a finished Program (symbackprop/program.py) into an Artifact:

    backend.build(program)           -> Artifact (source text and callables)
    backend.export(program, path)    -> path      (a file another project can use)
    backend.check(specs)                          TypeError for arguments it cannot take

It declares what the stages need to know about it (`fuses_across_statements`)
and the file suffixes it exports. The table of backends (backends/__init__.py)
is the only place that knows them by name.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Artifact:
    """What a backend built from a Program: its text and the callables that run it."""

    source: str                    # generated NumPy source or LLVM IR text
    call: object                   # takes the model's full argument list
    run_dynamic: object = None     # takes the dynamic (non-static) arguments only
    fast: object = None            # a cheaper route the fast path may call first (NumPy's `math` code) ...
    fallback: object = None        # ... and what it falls back to when that raises
    keep: object = None            # objects the callables need alive (a JIT module)


class Backend:
    name = "?"
    #: fuse elementwise chains across the model's statements (one loop), or keep one statement per line
    fuses_across_statements = False
    #: the generated code releases each value at its last use (always; or only under a memory budget)
    frees_at_last_use = True
    #: file suffixes `export` writes
    exports: tuple = ()
    #: the language of `Artifact.source` ("python", "llvm"): how tools highlight it
    language = "python"

    def check(self, specs):
        """Raise TypeError for an argument this backend cannot take."""

    def build(self, program):
        raise NotImplementedError

    def export(self, program, path, forward=None):
        """Write `program` to `path`; `forward`, the model's loss Program, for exports that include it."""
        raise NotImplementedError

    def __repr__(self):
        return f"<backend {self.name}>"


def load(source: str, filename: str, namespace=None) -> dict:
    """Execute generated source (ours, never the user's) in `namespace` (a new one by default); return it."""
    namespace = {} if namespace is None else namespace
    exec(compile(source, filename, "exec"), namespace)
    return namespace
