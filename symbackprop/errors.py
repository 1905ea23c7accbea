"""CompileError and the source locations every IR node carries."""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Loc:
    """Where a value comes from in the user's source."""

    file: str
    line: int
    text: str = ""

    def short(self) -> str:
        return f"{os.path.basename(self.file)}:{self.line}"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


NO_LOC = Loc("<generated>", 0)


class CompileError(Exception):
    """A program outside the accepted language; raised before any number is computed."""

    def __init__(self, message: str, loc: Loc | None = None, hint: str | None = None):
        self.loc = loc
        self.hint = hint
        self.detail = message
        text = f"{loc}: {message}" if loc is not None and loc.line else message
        if hint:
            text += f"\n  {hint}"
        super().__init__(text)

    @property
    def file(self) -> str | None:
        return self.loc.file if self.loc else None

    @property
    def line(self) -> int | None:
        return self.loc.line if self.loc else None


class ShapeError(ValueError):
    """Shapes or dtypes given at call time that the model cannot take."""

    def __init__(self, message: str, loc: Loc | None = None):
        self.loc = loc
        super().__init__(f"{loc}: {message}" if loc is not None and loc.line else message)
