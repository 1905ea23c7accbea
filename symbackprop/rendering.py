"""The jinja2 templates (top-level templates/, packaged as symbackprop/templates in a wheel)."""
from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    env.filters["docstring"] = docstring_text
    return env


def render(template: str, **context) -> str:
    return environment().get_template(template).render(**context)
