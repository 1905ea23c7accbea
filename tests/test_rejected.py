"""The corpus of rejected programs: each names its file, line, construct and what to write instead."""
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

import symbackprop as sb

CORPUS = sorted((Path(__file__).parent / "rejected").glob("*.py"))
HEADER = re.compile(r'(\w+)=("([^"]*)"|\S+)')


def _header(path):
    lines = path.read_text().splitlines()
    expect = dict((k, v3 or v) for k, v, v3 in HEADER.findall(lines[0].removeprefix("# expect:")))
    args = {}
    if lines[1].startswith("# args:"):
        args = dict((k, v) for k, v, _ in HEADER.findall(lines[1].removeprefix("# args:")))
    return expect, args


def _argument(text):
    m = re.fullmatch(r"(float32|float64)\[([\d,]*)\]", text)
    if m:
        shape = tuple(int(s) for s in m.group(2).split(",") if s)
        return np.linspace(0.1, 0.9, int(np.prod(shape)) or 1).reshape(shape).astype(m.group(1))
    return int(text)


def _load(path):
    spec = importlib.util.spec_from_file_location(f"rejected_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 60


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_rejected_program(path):
    expect, given = _header(path)
    module = _load(path)
    params = module.model.__code__.co_varnames[:module.model.__code__.co_argcount]
    args = [_argument(given.get(p, "float64[3]")) for p in params]
    kind = {"ValueError": ValueError, "TypeError": TypeError}.get(expect.get("kind"), sb.CompileError)
    f = sb.value_and_grad(module.model)
    with pytest.raises(kind) as info:
        f(*args)
    if kind is sb.CompileError:
        assert info.type is sb.CompileError
        assert info.value.file == str(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{expect['line']}: "), message
    assert expect["error"] in message, message
    if "hint" in expect:
        assert expect["hint"] in message, message
