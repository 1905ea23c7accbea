"""The jinja2 templates (top-level templates/, packaged as symbackprop/templates in a wheel)."""
from __future__ import annotations

import functools
import math
from pathlib import Path

import jinja2


def template_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "numpy_function.py.j2").is_file():
            return candidate
    raise FileNotFoundError(f"symbackprop templates not found beside {here}; reinstall the package")


def docstring_text(text) -> str:
    """Text that cannot close the docstring it is written into (a static argument 'a\"\"\"b' would)."""
    return str(text).replace("\\", "\\\\").replace('"', '\\"')


class _TemplateCache(jinja2.FileSystemBytecodeCache):
    """Templates compiled by an earlier process, as Python keeps .pyc files.

    Compiling the five templates a first call renders took ~9 ms of every new process's first
    compilation. jinja2 keys each entry by the template's file and checks it against a hash of
    the template's source, so an edited template is compiled afresh. The directory is jinja2's
    per-user one (mode 0700, checked to be the user's own). A cache that cannot be written is
    skipped: templates are then compiled as before.
    """

    def __init__(self):
        super().__init__(pattern="__symbackprop_%s.cache")

    def dump_bytecode(self, bucket):
        try:
            super().dump_bytecode(bucket)
        except OSError:
            pass


def _template_cache():
    try:
        return _TemplateCache()
    except (OSError, RuntimeError):  # no safe per-user directory
        return None


def source_literal(value) -> str:
    """A static value as Python source: repr, but a float that repr spells as a bare name (inf, nan)
    is written float('inf'), also inside a tuple."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({repr(value)!r})"
    if isinstance(value, tuple):
        items = [source_literal(v) for v in value]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    return repr(value)


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        bytecode_cache=_template_cache(),
    )
    env.filters["docstring"] = docstring_text
    env.filters["source_literal"] = source_literal
    return env


def render(template: str, **context) -> str:
    return environment().get_template(template).render(**context)
