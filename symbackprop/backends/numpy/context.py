"""The writer of the function being generated, for the rules that name values as they write.

A kernel's rule names its temps and outputs through the writer, and a scatter-add's
rule asks it which parts were already written in place; both are called with only
(node, args, out), so the writer is found here. Importing nothing from the rest of
the backend, this module is what rules.py and printer.py share without a cycle.
"""
from __future__ import annotations

import contextlib
import threading

_state = threading.local()
#: the column generated statements' comments (the model line) start at
COMMENT_COLUMN = 44


def with_comment(line, loc):
    """`line` with the model line it comes from as a comment."""
    if not loc or not loc.line:
        return line
    pad = max(COMMENT_COLUMN - len(line), 2)
    return f"{line}{' ' * pad}# {loc.short()}"


def current_writer():
    return _state.writer


@contextlib.contextmanager
def current(writer):
    """Make `writer` the current writer of this thread while the block runs."""
    saved, _state.writer = getattr(_state, "writer", None), writer
    try:
        yield writer
    finally:
        _state.writer = saved
