"""The command line: show, export, explain and graph the gradient of a model in a file; print the docs.

    symbackprop show model.py:loss --arg W=float64[128,784] --arg x=float64[784] --wrt W
    symbackprop docs language

Exit status: 0 ok; 1 the model was rejected (the CompileError message is printed),
or an artifact could not be written; 2 the command line is wrong (a bad MODEL,
a missing or malformed --arg, argument types the model cannot take, an unknown
--wrt name). docs/cli.md has an example of each command's output.
"""
from __future__ import annotations

import argparse
import ast
import difflib
import importlib.util
import inspect
import io
import json
import keyword
import os
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import numpy as np

from . import dtypes, regions_report
from . import __version__, backends
from .api import DerivativeFunction, value_and_grad
from .errors import CompileError
from .explain import explain
from .graph import to_dot
from .transforms.recompute import parse_budget

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PROG = "symbackprop"
#: example arrays hold numbers drawn with this seed; only shapes and dtypes steer compilation
SEED = 0
ARG_FORMS = "DTYPE[DIMS] (an array, e.g. float64[128,784]), DTYPE (a scalar, e.g. float32), " \
            "float (a Python float), a number (3, 0.1), true/false, a word (relu: a string), " \
            "or FILE.json (the value it holds)"
#: words that look like a dtype: misspelt, they are an error, not a string
_DTYPE_LIKE = re.compile(r"(float|int|uint|bool|complex|f|i|u)\d*|bfloat16|half|double|single", re.IGNORECASE)
_DTYPE_WORDS = ("float", "float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")


class UsageError(Exception):
    """The command line is wrong: exit 2."""


class Failure(Exception):
    """The model was rejected or an artifact could not be made: exit 1."""


# ---- the model and its arguments -------------------------------------------------

def load_model(target: str):
    """The function named by `FILE.py:FUNCTION` (the file is loaded as a module by path)."""
    path, sep, name = target.rpartition(":")
    if not sep or not path or not name:
        raise UsageError(f"MODEL must be FILE.py:FUNCTION, got {target!r}")
    if not path.endswith(".py"):
        raise UsageError(f"MODEL must name a .py file, got {path!r}")
    if not os.path.isfile(path):
        raise UsageError(f"no such file: {path}")
    if not name.isidentifier():
        raise UsageError(f"{name!r} is not a function name")
    path = os.path.abspath(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    module_name = stem if stem.isidentifier() and not keyword.iskeyword(stem) else "model"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    if os.path.dirname(path) not in sys.path:  # so that the model can import its neighbours
        sys.path.insert(0, os.path.dirname(path))
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise Failure(f"{path}:{e.lineno}: cannot load the model: {e.msg}") from None
    except Exception as e:  # the user's module failed while running its top level
        raise Failure(f"{path}: cannot load the model: {type(e).__name__}: {e}") from None
    fn = getattr(module, name, None)
    if fn is None:
        funcs = sorted(n for n, v in vars(module).items()
                       if inspect.isfunction(v) and v.__module__ == module_name and not n.startswith("_"))
        listed = ", ".join(funcs) if funcs else "none"
        raise UsageError(f"{os.path.basename(path)} has no function `{name}` (its functions: {listed})")
    return fn


def parse_arg(text: str):
    """`NAME=TYPE` from --arg: the name and an example value of that type."""
    m = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*=\s*(.*?)\s*", text)
    if not m:
        raise UsageError(f"--arg {text!r}: expected NAME=TYPE, e.g. --arg x=float64[128,784]")
    name, spec = m.groups()
    if not spec:
        raise UsageError(f"--arg {text!r}: the type is missing; give {ARG_FORMS}")
    return name, example_value(name, spec)


def example_value(name, spec):
    rng = np.random.default_rng(SEED)
    array = re.fullmatch(r"([A-Za-z_]\w*)\s*(?:\[(.*)\])?", spec)
    if array and array.group(1) not in ("true", "false", "True", "False", "None", "none", "inf", "nan"):
        word, dims = array.groups()
        if word == "float" and dims is None:
            return float(rng.uniform(0.5, 1.5))
        try:
            dtype = dtypes.named(word)  # bfloat16 too (the bf16 extra)
        except TypeError:
            if dims is None and not _looks_like_dtype(word):
                return word  # --arg act=relu: a string, no shell quoting needed
            raise UsageError(f"--arg {name}={spec}: unknown dtype `{word}`; use float64, float32, int64 or bool "
                             f"(or give {ARG_FORMS})") from None
        if not dtypes.is_numeric(dtype):
            raise UsageError(f"--arg {name}={spec}: models take float, int or bool arrays, not {dtype}")
        shape = () if dims is None else _dims(name, spec, dims)
        values = rng.uniform(0.5, 1.5, shape)
        if dtype.kind == "b":
            values = np.ones(shape, dtype=bool)
        elif dtype.kind in "iu":
            values = np.ones(shape, dtype=dtype)
        values = np.asarray(values, dtype=dtype)
        return values[()] if dims is None else values
    if spec.endswith(".json"):
        return json_value(name, spec)
    lowered = spec.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    try:
        value = ast.literal_eval(spec)
    except (ValueError, SyntaxError):
        raise UsageError(f"--arg {name}={spec}: cannot read `{spec}`; give {ARG_FORMS}") from None
    if not _plain(value):
        raise UsageError(f"--arg {name}={spec}: cannot use a {type(value).__name__}; give {ARG_FORMS}")
    return value


def _looks_like_dtype(word) -> bool:
    """A misspelt dtype (flaot64, float46, int46) rather than a string argument."""
    return bool(_DTYPE_LIKE.fullmatch(word)) or bool(difflib.get_close_matches(word.lower(), _DTYPE_WORDS, 1, 0.75))


def json_value(name, path):
    """The value a JSON file holds: a number, string, boolean or null as itself; a rectangular list of
    numbers (or booleans) as the NumPy array np.array(list) makes (ints: int64, any float: float64)."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except FileNotFoundError:
        raise UsageError(f"--arg {name}={path}: no such file (for the string, quote it: {name}='{path}')") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"--arg {name}={path}: cannot read it as JSON: {e}") from None
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, list):
        try:
            array = np.array(value)
        except ValueError:
            array = None
        if array is not None and array.dtype.kind in "biuf" and array.size and array.ndim:
            return array
    if isinstance(value, (dict, list)):
        return json_tree(name, path, value, name)
    raise UsageError(f"--arg {name}={path}: the file holds a {type(value).__name__}; a JSON file gives a number, "
                     "a string, true/false, null, an array (nested lists of numbers) or a tree of them")


def json_tree(name, path, value, where):
    """A parameter tree from JSON: objects are dicts, lists of numbers arrays, other lists lists; a string
    that spells an argument type (`"float64[784,128]"`, `"float"`) is an example value of that type, any other
    string, number, true/false or null itself."""
    if isinstance(value, dict):
        return {k: json_tree(name, path, v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list):
        try:
            array = np.array(value)
        except ValueError:
            array = None
        if array is not None and array.dtype.kind in "biuf" and array.size and array.ndim:
            return array
        if not value:
            raise UsageError(f"--arg {name}={path}: {where} is an empty list; give its arrays")
        return [json_tree(name, path, v, f"{where}[{k}]") for k, v in enumerate(value)]
    if isinstance(value, str) and (re.fullmatch(r"[A-Za-z_]\w*\s*\[.*\]", value) or value == "float"
                                   or _looks_like_dtype(value)):
        return example_value(f"{name}: {where}", value)
    return value


def _plain(v):
    if isinstance(v, tuple):
        return all(_plain(x) for x in v)
    return isinstance(v, (int, float, str, bool, type(None)))


def _dims(name, spec, dims):
    parts = [p.strip() for p in dims.split(",")]
    if parts == [""]:
        return ()
    if parts[-1] == "":  # float64[3,]
        parts = parts[:-1]
    if not all(re.fullmatch(r"\d+", p) for p in parts):
        raise UsageError(f"--arg {name}={spec}: dimensions must be non-negative integers, e.g. float64[128,784]")
    return tuple(int(p) for p in parts)


def bind_arguments(fn, given: dict):
    """(args, kwargs) with one value per parameter of `fn`: the --arg ones, and the defaults for the
    rest; keyword-only parameters by name."""
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    names = [p.name for p in params]
    unknown = [n for n in given if n not in names]
    if unknown:
        raise UsageError(f"`{fn.__name__}` has no parameter {', '.join(f'`{n}`' for n in unknown)} "
                         f"(its parameters: {', '.join(names)})")
    missing = [p.name for p in params if p.name not in given and p.default is inspect.Parameter.empty]
    if missing:
        example = " ".join(f"--arg {n}=float64[...]" for n in missing)
        raise UsageError(f"missing --arg for {', '.join(missing)} (no default value); for example {example}")
    values = {p.name: given[p.name] if p.name in given else p.default for p in params}
    args = tuple(values[p.name] for p in params if p.kind is not p.KEYWORD_ONLY)
    return args, {p.name: values[p.name] for p in params if p.kind is p.KEYWORD_ONLY}


def parse_wrt(text):
    if text is None:
        return None
    items = [w.strip() for w in text.split(",")]
    if any(not w for w in items):
        raise UsageError(f"--wrt {text!r}: give parameter names separated by commas, e.g. --wrt W1,b1")
    items = [int(w) if re.fullmatch(r"-?\d+", w) else w for w in items]
    return items[0] if len(items) == 1 else tuple(items)


def gradient_function(args, backend=None):
    """The value_and_grad function of the model, specialised for the --arg types."""
    fn = load_model(args.model)
    wrt = parse_wrt(args.wrt)
    has_aux = getattr(args, "has_aux", False)
    inner = getattr(fn, "fn", None)
    if getattr(fn, "__symbackprop__", False) and inner is not None:  # decorated with @sb.grad: use its wrt
        if wrt is None:
            wrt = tuple(fn.params[i] for i in fn.wrt) if not fn.single else fn.params[fn.wrt[0]]
        has_aux = has_aux or getattr(fn, "has_aux", False)
        fn = inner
    if not inspect.isfunction(fn):
        raise UsageError(f"`{args.model}` is a {type(fn).__name__}, not a function")
    given = {}
    for text in args.arg or []:
        name, value = parse_arg(text)
        if name in given:
            raise UsageError(f"--arg {name} is given twice")
        given[name] = value
    values, keywords = bind_arguments(fn, given)
    budget = getattr(args, "memory_budget", None)
    try:
        parse_budget(budget)
    except (TypeError, ValueError) as e:
        raise UsageError(f"--memory-budget: {e}") from None
    mode = getattr(args, "mode", None) or "value_and_grad"
    if mode != "value_and_grad":
        return derivative_function(args, fn, wrt, mode, values, keywords, has_aux, budget, backend)
    try:
        gradfn = value_and_grad(fn, wrt=wrt, backend=backends.DEFAULT, has_aux=has_aux, memory_budget=budget)
    except (TypeError, ValueError) as e:
        raise UsageError(f"--wrt: {e}") from None
    try:
        gradfn.specialise(*values, **keywords)
    except CompileError:
        raise
    except (TypeError, ValueError) as e:
        raise UsageError(f"the --arg types do not fit `{fn.__name__}`: {e}") from None
    backend = backend or backends.DEFAULT
    if backend != backends.DEFAULT:
        try:
            gradfn = value_and_grad(fn, wrt=wrt, backend=backend, has_aux=has_aux, memory_budget=budget)
            gradfn.specialise(*values, **keywords)
        except Exception as e:
            raise Failure(f"the {backend.upper()} backend could not compile `{fn.__name__}`: "
                          f"{type(e).__name__}: {e}") from None
    return gradfn, (values, keywords)


#: what --mode picks: the gradient (default) or a derivative entry point
MODES = ("value_and_grad", "jvp", "vjp", "jacobian", "hessian", "hvp")


def derivative_function(args, fn, wrt, mode, values, keywords, has_aux, budget, backend):
    """The sb.jvp / vjp / jacobian / hessian / hvp function of the model (--mode), specialised for the --arg types."""
    if budget is not None and mode == "jvp":
        raise UsageError("--mode jvp takes no --memory-budget: forward mode keeps nothing for a later pass")
    try:
        fn_ = DerivativeFunction(fn, mode, wrt=wrt, backend=backend or backends.DEFAULT, has_aux=has_aux,
                                 memory_budget=budget)
    except (TypeError, ValueError) as e:
        raise UsageError(f"--wrt: {e}") from None
    try:
        fn_.specialise(*values, **keywords)
    except CompileError:
        raise
    except (TypeError, ValueError) as e:
        raise UsageError(f"the --arg types do not fit `{fn.__name__}`: {e}") from None
    return fn_, (values, keywords)


# ---- show: highlighted source ------------------------------------------------------

COLOURS = {
    "keyword": "\033[1;35m", "builtin": "\033[36m", "function": "\033[1;34m", "string": "\033[32m",
    "comment": "\033[2;37m", "number": "\033[33m", "module": "\033[36m", "type": "\033[33m",
    "local": "\033[36m", "global": "\033[1;34m",
}
RESET = "\033[0m"
_BUILTINS = {"float", "int", "abs", "max", "min", "range", "len", "sum", "tuple", "True", "False", "None"}


def _paint(kind, text):
    colour = COLOURS.get(kind)
    if not colour or not text:
        return text
    return "\n".join(f"{colour}{line}{RESET}" if line else line for line in text.split("\n"))


def highlight_python(source: str) -> str:
    """Python source with ANSI colours (keywords, names being defined, strings, numbers, comments)."""
    lines = source.splitlines(keepends=True)
    out, row, col = [], 1, 0

    def copy_to(r, c):
        nonlocal row, col
        while row < r:
            out.append(lines[row - 1][col:])
            row, col = row + 1, 0
        out.append(lines[row - 1][col:c] if row - 1 < len(lines) else "")
        col = c

    previous = None
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type in (tokenize.ENDMARKER,):
                break
            (r0, c0), (r1, c1) = tok.start, tok.end
            if tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT) or not tok.string:
                continue
            copy_to(r0, c0)
            kind = None
            if tok.type == tokenize.COMMENT:
                kind = "comment"
            elif tok.type == tokenize.STRING:
                kind = "string"
            elif tok.type == tokenize.NUMBER:
                kind = "number"
            elif tok.type == tokenize.NAME:
                if previous in ("def", "class"):
                    kind = "function"
                elif keyword.iskeyword(tok.string) and tok.string not in ("True", "False", "None"):
                    kind = "keyword"
                elif previous == ".":
                    kind = None  # an attribute: t.sum() is not the builtin sum
                elif tok.string in ("np", "math"):
                    kind = "module"
                elif tok.string in _BUILTINS:
                    kind = "builtin"
            out.append(_paint(kind, tok.string))
            row, col = r1, c1
            previous = tok.string
        copy_to(len(lines) + 1, 0) if row <= len(lines) else None
    except (tokenize.TokenError, IndentationError, IndexError):
        return source
    return "".join(out)


_LLVM = re.compile(r"""
    (?P<comment>;.*$)
  | (?P<string>c?"[^"]*")
  | (?P<local>%[-\w.$]+)
  | (?P<global>@[-\w.$]+)
  | (?P<type>\b(?:i\d+|half|float|double|void|ptr|label|metadata)\b)
  | (?P<keyword>\b(?:define|declare|ret|br|call|tail|load|store|alloca|getelementptr|inbounds|phi|select|icmp|fcmp
        |fadd|fsub|fmul|fdiv|frem|fneg|add|sub|mul|sdiv|udiv|srem|urem|shl|lshr|ashr|and|or|xor|zext|sext|trunc
        |fpext|fptrunc|sitofp|uitofp|fptosi|bitcast|extractelement|insertelement|shufflevector|switch|unreachable
        |global|constant|private|internal|external|dso_local|nounwind|readonly|noalias|nocapture|align|to|label
        |attributes|target|datalayout|triple|fast|nnan|ninf|nsz|arcp|contract|afn|reassoc)\b)
  | (?P<number>\b-?\d+(?:\.\d+)?(?:e[-+]?\d+)?\b|0x[0-9A-Fa-f]+)
""", re.VERBOSE | re.MULTILINE)


def highlight_llvm(text: str) -> str:
    return _LLVM.sub(lambda m: _paint(m.lastgroup, m.group()), text)


def use_colour(choice: str, stream) -> bool:
    if choice == "always":
        return True
    if choice == "never":
        return False
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


#: the highlighter of each backend's `language`
HIGHLIGHTERS = {"python": highlight_python, "llvm": highlight_llvm}


# ---- the commands -------------------------------------------------------------------

def cmd_show(args):
    gradfn, _ = gradient_function(args, args.backend)
    text = gradfn.source
    if use_colour(args.color, sys.stdout):
        text = HIGHLIGHTERS[backends.get(args.backend).language](text)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    if args.memory:
        sys.stdout.write("\n" + str(gradfn.memory()) + "\n")
    return EXIT_OK


EXPORT_SUFFIXES = (".py", ".ll", ".so")


def cmd_export(args):
    suffix = os.path.splitext(args.output)[1]
    if suffix not in EXPORT_SUFFIXES:
        raise UsageError(f"-o {args.output}: export writes .py, .ll or .so files")
    gradfn, _ = gradient_function(args, args.backend)
    try:
        written = gradfn.export(args.output)
    except (ImportError, AttributeError, NotImplementedError) as e:
        if suffix == ".py":
            raise
        raise Failure(f"cannot write {args.output}: {suffix} export needs the LLVM backend "
                      f"(symbackprop.backends.llvm.export), which is not available here ({type(e).__name__}: {e}). "
                      "Export to a .py file instead.") from None
    except OSError as e:
        raise Failure(f"cannot write {args.output}: {e.strerror or e}") from None
    except Exception as e:
        raise Failure(f"cannot write {args.output}: {type(e).__name__}: {e}") from None
    paths = [os.fspath(written) if isinstance(written, (str, os.PathLike)) else args.output]
    if suffix == ".so":
        header = os.path.splitext(args.output)[0] + ".h"
        if os.path.isfile(header):
            paths.append(header)
    for p in paths:
        print(f"wrote {p}")
    return EXIT_OK


def cmd_explain(args):
    gradfn, (values, keywords) = gradient_function(args)
    if isinstance(gradfn, DerivativeFunction):
        sys.stdout.write(gradfn.explain(*values, **keywords))
        return EXIT_OK
    sys.stdout.write(explain(gradfn, *values, **keywords))
    return EXIT_OK


RENDERED = {".svg": "svg", ".png": "png", ".pdf": "pdf"}


def cmd_graph(args):
    suffix = os.path.splitext(args.output)[1] if args.output else ""
    if args.output and suffix not in (".dot", ".gv") and suffix not in RENDERED:
        raise UsageError(f"-o {args.output}: graph writes .dot or .gv (DOT text), or .svg, .png or .pdf "
                         "(drawn by Graphviz)")
    gradfn, (values, keywords) = gradient_function(args)
    regions = None if isinstance(gradfn, DerivativeFunction) else regions_report.for_call(gradfn, values, keywords)
    dot_text = to_dot(gradfn.specialise(*values, **keywords), regions=regions)
    if not args.output:
        sys.stdout.write(dot_text)
        return EXIT_OK
    if suffix in (".dot", ".gv"):
        _write(args.output, dot_text)
        print(f"wrote {args.output}")
        return EXIT_OK
    dot = shutil.which("dot")
    if dot is None:
        raise Failure(f"cannot draw {args.output}: Graphviz's `dot` program is not installed. Install it "
                      "(apt-get install graphviz, or brew install graphviz), or write the DOT text with "
                      "-o graph.dot and render it elsewhere.")
    result = subprocess.run([dot, f"-T{RENDERED[suffix]}", "-o", args.output], input=dot_text, text=True,
                            capture_output=True)
    if result.returncode != 0:
        raise Failure(f"dot could not draw {args.output}: {result.stderr.strip()}")
    print(f"wrote {args.output}")
    return EXIT_OK


def _write(path, text):
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise Failure(f"cannot write {path}: {e.strerror or e}") from None


# ---- docs: the packaged documentation ---------------------------------------------------

#: the documents a wheel carries (docs/*.md, packaged as symbackprop/docs), with what each is about
DOC_TOPICS = {
    "language": "the model language: what a model can use, conventions, what is rejected and what to write",
    "training": "sb.train_step and the optimizers",
    "cli": "this command line",
    "llvm": "the LLVM backend",
    "memory": "the memory report and checkpointing under memory_budget=",
    "export": "exported modules: one specialisation each, the argument checks, the last-batch recipes",
    "distributed": "sb.distributed: data-parallel gradients and training on Dask, what the compiler proves",
    "higher_order": "forward mode and higher order: sb.jvp, vjp, jacobian, hessian, hvp, grad of grad",
    "trees": "parameter trees: tuples, lists and dicts of arrays as parameters, their gradients and exports",
    "batching": "sb.vmap and sb.per_example_grad: a model or its gradient over a batch, as one program",
}


def docs_dir() -> Path:
    """The packaged docs of an installed symbackprop, or the source tree's docs/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "docs", here.parent / "docs"):
        if all((candidate / f"{topic}.md").is_file() for topic in DOC_TOPICS):
            return candidate
    raise Failure(f"the documentation is not installed beside {here}; reinstall symbackprop")


def cmd_docs(args):
    if args.topic is None:
        width = max(map(len, DOC_TOPICS))
        print(f"usage: {PROG} docs TOPIC; the topics:")
        for topic, about in DOC_TOPICS.items():
            print(f"  {topic:<{width}}  {about}")
        return EXIT_OK
    sys.stdout.write((docs_dir() / f"{args.topic}.md").read_text(encoding="utf-8"))
    return EXIT_OK


# ---- the parser ------------------------------------------------------------------------

EXAMPLE = "model.py:loss --arg W=float64[128,784] --arg b=float64[128] --arg x=float64[784] --wrt W,b"
COMMANDS = {
    "show": (cmd_show, "print the generated gradient code",
             "Print the generated code of value_and_grad (NumPy source, or LLVM IR with --backend llvm),\n"
             "highlighted when standard output is a terminal."),
    "export": (cmd_export, "write a standalone .py, .ll or .so (with .h)",
               "Write the specialisation as a standalone artifact chosen by the suffix of -o:\n"
               "  .py  a module needing only NumPy, with forward(...) and value_and_grad(...)\n"
               "  .ll  LLVM IR text;  .so  a shared library, with a C header (.h) beside it"),
    "explain": (cmd_explain, "print the backprop table",
                "Print the backprop table: each forward operation with its source line, then, last\n"
                "operation first, the residual (incoming gradient), the local derivative it is\n"
                "multiplied by, and the gradient this produces."),
    "graph": (cmd_graph, "draw the forward and backward computational graph",
              "Write the computational graph as Graphviz DOT (to standard output, or -o graph.dot);\n"
              "-o graph.svg (.png, .pdf) draws it with Graphviz's `dot`. Dashed red edges are the\n"
              "forward values the backward pass reuses."),
}
ARG_HELP = ("an argument's type: NAME=float64[128,784] (an array), NAME=float32 (a scalar), NAME=float "
            "(a Python float), NAME=3 or NAME=0.1 or NAME=true or NAME=relu (a value), NAME=FILE.json "
            "(the number, string or array of numbers in the file); repeat for each parameter "
            "without a default")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Symbolic reverse-mode differentiation of a Python+NumPy model in a file.",
        epilog=f"example:\n  {PROG} explain {EXAMPLE}\n\n"
               "exit status: 0 ok, 1 model rejected or artifact not written, 2 usage error")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, summary, description) in COMMANDS.items():
        p = sub.add_parser(name, help=summary, description=description,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog=f"example:\n  {PROG} {name} {EXAMPLE}"
                                  + (" -o grad.py" if name == "export" else "")
                                  + (" -o graph.svg" if name == "graph" else ""))
        p.add_argument("model", metavar="MODEL", help="the model, as FILE.py:FUNCTION")
        p.add_argument("--arg", action="append", metavar="NAME=TYPE", help=ARG_HELP)
        p.add_argument("--wrt", metavar="A,B", help="the parameters to differentiate, comma-separated "
                                                    "(default: the first parameter)")
        p.add_argument("--backend", choices=backends.NAMES, default=backends.DEFAULT,
                       help="code generator for show and export (default: numpy)")
        p.add_argument("--has-aux", action="store_true",
                       help="the model returns (loss, aux): aux is returned beside the value, never differentiated")
        if name == "export":
            p.add_argument("-o", "--output", required=True, metavar="OUT",
                           help="the file to write: OUT.py, OUT.ll or OUT.so")
        if name == "graph":
            p.add_argument("-o", "--output", metavar="OUT",
                           help="OUT.dot (DOT text) or OUT.svg/.png/.pdf (needs Graphviz); default: DOT on stdout")
        if name != "graph":
            p.add_argument("--mode", choices=MODES, default="value_and_grad",
                           help="what to compile: the gradient (default), or sb.jvp, vjp, jacobian, hessian or "
                                "hvp (the direction is an argument of the generated function: t_<x>, d_<out>)")
            p.add_argument("--memory-budget", metavar="SIZE",
                           help="keep at most SIZE bytes of residuals (e.g. 64MB, 1.5GiB) and recompute the rest")
        if name == "show":
            p.add_argument("--memory", action="store_true",
                           help="after the code, the memory report: residuals kept, recomputed, the peak")
            p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                           help="highlight the code (default: when standard output is a terminal)")
    docs = sub.add_parser("docs", help="print the documentation (the model language, training, ...)",
                          description="Print one of the documents installed with symbackprop (Markdown text).")
    docs.add_argument("topic", nargs="?", choices=list(DOC_TOPICS), metavar="TOPIC",
                      help=f"one of {', '.join(DOC_TOPICS)}; without it, the list")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "docs":
            return cmd_docs(args)
        return COMMANDS[args.command][0](args)
    except UsageError as e:
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except CompileError as e:
        print(str(e), file=sys.stderr)
        return EXIT_FAILED
    except Failure as e:
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # `symbackprop show ... | head`
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug in symbackprop: say so, without a traceback from inside the compiler
        print(f"{PROG} {args.command}: internal error (a bug in symbackprop, please report it): "
              f"{type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILED
