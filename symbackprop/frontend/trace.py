"""Run the model's `ast` on the signature: static Python values are computed, arrays become IR.

Control flow decided by static values (shapes, loop indices, non-array arguments) is
decided here: loops unroll and `if`s pick a branch; helper functions are inlined.
Unrolling keeps one IR node per array operation per iteration: compile time is
linear in the trip count, and the SymPy work per repeated body is cached. An `if`
or `while` on an array value becomes a region whose branches or body are traced once
(frontend/regions.py). Everything outside the language raises CompileError at the
construct's line.
"""
from __future__ import annotations

import ast
import builtins
import functools
import inspect
import math
import numbers
import operator
import sys
import sysconfig
import types

import numpy as np

from ..errors import CompileError, ShapeError
from ..ir import Graph, Value, append, at, building
from ..primitives import gather, ops
from ..primitives.custom import CustomJVPCall, CustomVJPCall
from . import compositions, namespace, regions, suggest
from .checks import REJECTED_EXPRESSIONS, REJECTED_STATEMENTS, check_function, star_parameters_error
from .assignment import assigned_into, check_unshared, in_place, view_base
from .closures import Closure, signature
from .custom import CustomJVP, CustomVJP
from .regions import FLAG_NAMES, FLAGS, IFEXP, MISSING, Escape, Loop, Undefined, condition, is_number
from .source import Source

MAX_ITERATIONS = 100_000


class _Module:
    """np, math, or a NumPy submodule (np.linalg: nothing of it is accepted, each name gets its hint)."""

    def __init__(self, name, functions, constants, real):
        self.name, self.functions, self.constants, self.real = name, functions, constants, real


NUMPY = _Module("np", namespace.NUMPY, namespace.NUMPY_CONSTANTS, np)
MATH = _Module("math", namespace.MATH, namespace.MATH_CONSTANTS, math)


class _UserModule:
    """A module of the user's (`import helpers`): its functions are helpers, its numbers constants."""

    def __init__(self, name, module):
        self.name, self.module = name, module


def _is_stdlib(module) -> bool:
    if module.__name__.split(".")[0] not in sys.stdlib_module_names:
        return False
    path = getattr(module, "__file__", None)
    return path is None or path.startswith(sysconfig.get_paths()["stdlib"])


class _Callable:
    def __init__(self, label, impl, owner=None):
        self.label, self.impl, self.owner = label, impl, owner


class _Helper:
    def __init__(self, fn):
        self.fn = fn


class _CustomHelper:
    def __init__(self, custom):
        self.custom = custom


class _Derivative:
    """A call of an sb.grad / value_and_grad / jvp / hvp function inside a model: its model inlined, then
    differentiated there (the pipeline's `derivatives` hook), so the result is one program."""

    def __init__(self, compiled, entry):
        self.compiled, self.entry = compiled, entry


class _Batched:
    """A call of an sb.vmap function of a model inside a model: the model traced on one example, then
    batched there (the pipeline's `vectorize` hook), so that what calls it can differentiate it."""

    def __init__(self, batched):
        self.batched = batched


#: the entry points a model may call, and the keyword of each one's direction
CALLABLE_DERIVATIVES = {"grad": None, "value_and_grad": None, "jvp": "tangents", "hvp": "v", "vjp": "cotangent",
                        "jacobian": None, "hessian": None}

#: the entry points whose model may return an array (the others differentiate a scalar)
_ARRAY_RESULT = ("jvp", "vjp", "jacobian")


class _Return(Exception):
    def __init__(self, value):
        self.value = value


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Frame:
    """One function's names; a closure's frame reads on in the frame it was made in (`parent`)."""

    def __init__(self, src, env, parent=None, owner=None):
        self.src = src
        self.globals = src.fn.__globals__
        self.env = env
        self.parent = parent
        self.owner = owner          # the Closure whose body this frame runs, if any
        self.loops: list = []       # the loops being traced in this function, innermost last (regions.Loop)
        self.regions = 0            # how many value-dependent branches or loop bodies deep the tracer is


#: list methods a model may call: lists of arrays built as it goes (hs.append(h), then np.stack(hs))
_LIST_METHODS = ("append", "extend", "pop", "insert", "copy")


class _DefaultList(list):
    """A list that is a parameter's default value. Python shares it between calls, so changing it would
    make a model's result depend on its earlier calls: its list methods that change it are refused."""


def _default(x):
    return _DefaultList(x) if isinstance(x, list) else x


_BINOPS = {
    ast.Add: ("+", ops.add), ast.Sub: ("-", ops.sub), ast.Mult: ("*", ops.mul), ast.Div: ("/", ops.div),
    ast.Pow: ("**", ops.power), ast.MatMult: ("@", ops.matmul),
    ast.BitAnd: ("&", lambda a, b: ops.logical("and", a, b) if _has_value(a, b) else a & b),
    ast.BitOr: ("|", lambda a, b: ops.logical("or", a, b) if _has_value(a, b) else a | b),
    ast.FloorDiv: ("//", None), ast.Mod: ("%", None), ast.LShift: ("<<", None), ast.RShift: (">>", None),
    ast.BitXor: ("^", None),
}
_STATIC_BINOPS = {ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.LShift: operator.lshift,
                  ast.RShift: operator.rshift, ast.BitXor: operator.xor}
_COMPARE = {ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge", ast.Eq: "eq", ast.NotEq: "ne"}

def _has_value(*xs):
    return any(isinstance(x, Value) for x in xs)


def _is_static(x):
    return isinstance(x, (numbers.Number, np.number, np.bool_, str, type(None), slice, range, tuple, list,
                          type(Ellipsis)))


def _describe(x):
    if isinstance(x, Value):
        return f"an array {x.dtype}{list(x.shape)}"
    return f"a {type(x).__name__}"


class Tracer:
    """Evaluates a model's body on IR values; one instance per compilation."""

    def __init__(self, derivatives=None, transpose=None, vectorize=None):
        #: derivatives(entry, body, values, names, wrt, directions) -> (value, derivatives): pipeline/stages.py
        #: traces `body` on parameters of its own, differentiates it there and inlines the result (reverse
        #: and forward mode are transforms, above the frontend)
        self.derivatives = derivatives
        #: transpose(body, primals, tangent_likes, g) -> one cotangent per tangent: an sb.custom_jvp rule's
        #: transpose (reverse mode over the rule traced on tangents of its own; pipeline/stages.py)
        self.transpose = transpose
        #: vectorize(body, values, axes, names) -> the batched result: an sb.vmap function called in a model
        self.vectorize = vectorize
        self.stack: list = []
        self.closures: list = []     # the nested defs and lambdas being inlined, innermost last
        self.frames: list = []       # every active frame (functions, closures, comprehensions), innermost last
        #: the location of the last `return` run (a custom rule's, when its result is checked)
        self.return_loc = None
        #: per value-dependent region being traced: the lists made outside it (it may read, not change them)
        self.frozen: list = []
        #: a `while` body's param for a carried name -> the array the name held before the loop, which NumPy
        #: writes into when the body assigns into the name (checked unshared as that array)
        self.carried: dict = {}

    # ---- functions ---------------------------------------------------------
    def call_model(self, fn, values):
        """The model on one value per parameter, in the def's order: keyword-only ones by name."""
        params = list(inspect.signature(fn).parameters.values())
        args = [v for p, v in zip(params, values) if p.kind is not p.KEYWORD_ONLY]
        kwargs = {p.name: v for p, v in zip(params, values) if p.kind is p.KEYWORD_ONLY}
        return self.call(fn, args, kwargs)

    def call(self, fn, args, kwargs, call_loc=None):
        src = Source(fn)
        check_function(src)
        if src.node in [s.node for s in self.stack]:
            raise CompileError(f"`{fn.__name__}` calls itself (recursion)", call_loc or src.loc(src.node),
                               "Write the repetition as a `for` loop.")
        if isinstance(src.node, ast.AsyncFunctionDef):
            raise CompileError(f"`{fn.__name__}` is an async function", src.loc(src.node),
                               "Models and helpers are plain functions.")
        error = star_parameters_error(src)
        if error is not None:
            raise error
        try:
            bound = inspect.signature(fn).bind(*args, **kwargs)
        except TypeError as e:
            raise CompileError(f"call of `{fn.__name__}`: {e}", call_loc or src.loc(src.node)) from None
        given = set(bound.arguments)
        bound.apply_defaults()
        frame = _Frame(src, {k: v if k in given else _default(v) for k, v in bound.arguments.items()})
        self.stack.append(src)
        self.frames.append(frame)
        try:
            self.block(frame, src.node.body)
        except _Return as r:
            return r.value
        except (_Break, _Continue):  # pragma: no cover - caught by their loops
            raise
        finally:
            self.stack.pop()
            self.frames.pop()
        raise CompileError(f"`{fn.__name__}` has no `return`", src.loc(src.node),
                           "End the function with `return <value>`.")

    def call_closure(self, closure, args, kwargs, loc):
        """A nested def or lambda, inlined: its parameters bound as Python binds them, its other names
        read from the frame it was made in."""
        if any(c is closure.node for c in self.closures):
            raise CompileError(f"`{closure.name}` calls itself (recursion)", loc, "Write the repetition as a `for` loop.")
        try:
            bound = closure.signature.bind(*args, **kwargs)
        except TypeError as e:
            raise CompileError(f"call of `{closure.name}`: {e}", loc) from None
        given = set(bound.arguments)
        bound.apply_defaults()
        env = {k: v if k in given else _default(v) for k, v in bound.arguments.items()}
        frame = _Frame(closure.frame.src, env, parent=closure.frame, owner=closure)
        self.closures.append(closure.node)
        self.frames.append(frame)
        try:
            if isinstance(closure.node, ast.Lambda):
                return self.expr(frame, closure.node.body)
            self.block(frame, closure.node.body)
        except _Return as r:
            return r.value
        finally:
            self.closures.pop()
            self.frames.pop()
        raise CompileError(f"`{closure.name}` has no `return`", frame.src.loc(closure.node),
                           "End the function with `return <value>`.")

    def make_closure(self, frame, node, arguments):
        defaults = [self.expr(frame, d) for d in arguments.defaults]
        kw_defaults = [None if d is None else self.expr(frame, d) for d in arguments.kw_defaults]
        name = getattr(node, "name", "<lambda>")
        return Closure(node, frame, signature(arguments, defaults, kw_defaults, name, frame.src.loc(node)))
    # ---- sb.custom_vjp helpers ------------------------------------------------
    def call_custom(self, custom, args, kwargs, loc):
        """The helper's body for its value, then a custom_vjp node whose adjoint traces the rule."""
        fn, rule = custom.fn, custom.rule
        jvp = isinstance(custom, CustomJVP)
        if rule is None:
            names = list(inspect.signature(fn).parameters)
            params = ", ".join(names + ["out"] + ([f"t_{p}" for p in names] if jvp else ["g"]))
            kind = "jvp" if jvp else "vjp"
            raise CompileError(f"`{fn.__name__}` is an sb.custom_{kind} helper with no rule", loc,
                               f"Give it one: @{fn.__name__}.def{kind} above def {fn.__name__}_{kind}({params}).")
        out = self.call(fn, args, kwargs, loc)
        bound = inspect.signature(fn).bind(*args, **kwargs)  # self.call bound them already: no error here
        bound.apply_defaults()
        inputs = list(bound.arguments.values())
        if not isinstance(out, Value):
            if isinstance(out, (numbers.Number, np.number)) and not any(isinstance(x, Value) for x in inputs):
                return out  # computed from numbers alone: nothing to differentiate
            raise CompileError(f"the sb.custom_{'jvp' if jvp else 'vjp'} helper `{fn.__name__}` returns "
                               f"{_describe(out)}; it must "
                               "return one array (the value its rule differentiates)", self.return_loc or loc)
        slots = tuple(isinstance(x, Value) for x in inputs)
        if not any(slots):
            return out
        rule_src = Source(rule)
        attrs = {"helper": fn.__name__, "rule": rule.__name__, "rule_loc": rule_src.loc(rule_src.node)}
        if jvp:
            attrs["tangent"] = functools.partial(self._custom_tangent, custom, inputs, slots, loc)
            attrs["adjoint"] = functools.partial(self._custom_transpose, custom, inputs, slots, loc)
        else:
            attrs["adjoint"] = functools.partial(self._custom_adjoint, custom, inputs, slots, loc)
        prim = CustomJVPCall if jvp else CustomVJPCall
        result = append(prim, [x for x in inputs if isinstance(x, Value)] + [out], attrs)
        result.weak = out.weak
        return result

    def _custom_adjoint(self, custom, inputs, slots, loc, node, g, wants):
        """The rule's body traced with the node's current inputs, its value and `g`: one gradient per array input."""
        fn, rule = custom.fn, custom.rule
        arrays = iter(node.inputs[:-1])  # passes may have rewired them since the call was traced
        args = [next(arrays) if slot else x for x, slot in zip(inputs, slots)]
        self.return_loc = None
        result = self.call(rule, args + [node.outputs[0], g], {}, loc)
        where = self.return_loc or Source(rule).loc(Source(rule).node)
        names = list(inspect.signature(fn).parameters)
        n = len(names)
        if n == 1 and not isinstance(result, (tuple, list)):
            result = (result,)
        if not isinstance(result, (tuple, list)) or len(result) != n:
            got = f"{len(result)} values" if isinstance(result, (tuple, list)) else _describe(result)
            raise CompileError(f"the rule `{rule.__name__}` of `{fn.__name__}` returns {got}; it must return "
                               f"one gradient per input of `{fn.__name__}` ({n}: {', '.join(names)})", where,
                               f"Return ({', '.join('d_' + p for p in names)}{',' if n == 1 else ''}), None for an "
                               "input that gets no gradient.")
        grads, wanted = [], iter(wants)
        for name, x, slot, r in zip(names, args, slots, result):
            if not slot:
                continue
            want = next(wanted)
            if isinstance(r, (numbers.Number, np.number)) and not isinstance(r, (bool, np.bool_)):
                r = None if r == 0 else ops.fill(float(r), x.shape, x.dtype if x.dtype.kind == "f" else np.float64)
            elif r is not None and not isinstance(r, Value):
                raise CompileError(f"the rule `{rule.__name__}` returns {_describe(r)} as the gradient of `{name}`; "
                                   "a gradient is an array, a number or None", where)
            if r is not None and r.shape != x.shape:
                raise CompileError(f"the rule `{rule.__name__}` returns a gradient of shape {r.shape} for `{name}`, "
                                   f"which has shape {x.shape}", where,
                                   f"Return a gradient shaped like `{name}` (sum over broadcast axes, "
                                   f"e.g. np.sum(..., axis=0)).")
            grads.append(r if want else None)
        return grads

    def _custom_tangent(self, custom, inputs, slots, loc, node, ts, batch):
        """The sb.custom_jvp rule's body traced with the node's current inputs, its value and one tangent per
        input (a zero array where none arrives, 0.0 for a number): the value's tangent, shape batch + its own."""
        arrays, tangents = iter(node.inputs[:-1]), iter(ts)
        args, targs = [], []
        for x, slot in zip(inputs, slots):
            if slot:
                v, t = next(arrays), next(tangents)
                args.append(v)
                targs.append(t if t is not None else ops.zero_tangent(v, batch))
            else:
                args.append(x)
                targs.append(0.0)
        out = node.inputs[-1]
        return self._rule_tangent(custom, args, out, targs, tuple(batch) + out.shape, loc)

    def _rule_tangent(self, custom, args, out, tangents, shape, loc):
        fn, rule = custom.fn, custom.rule
        self.return_loc = None
        t = self.call(rule, list(args) + [out] + list(tangents), {}, loc)
        where = self.return_loc or Source(rule).loc(Source(rule).node)
        if isinstance(t, (numbers.Number, np.number)) and not isinstance(t, (bool, np.bool_)):
            t = ops.fill(float(t), shape, out.dtype)
        if not isinstance(t, Value):
            raise CompileError(f"the rule `{rule.__name__}` of `{fn.__name__}` returns {_describe(t)}; it must return "
                               "the tangent of the helper's value (one array)", where)
        if t.shape != shape:
            raise CompileError(f"the rule `{rule.__name__}` returns a tangent of shape {t.shape} for the value of "
                               f"`{fn.__name__}`, of shape {shape}", where,
                               "Return an array shaped like the helper's value (the tangents may carry leading "
                               "axes of directions: write the rule elementwise or with axis=-1).")
        return t

    def _custom_transpose(self, custom, inputs, slots, loc, node, g, wants):
        """Reverse mode through an sb.custom_jvp helper: the rule's transpose at g (the rule is linear in the
        tangents), by reverse mode over the rule traced on tangents of its own."""
        arrays = iter(node.inputs[:-1])
        args = [next(arrays) if slot else x for x, slot in zip(inputs, slots)]
        out = node.inputs[-1]
        like = [a for a, slot in zip(args, slots) if slot]

        def body(primals, tangents):
            ts, k = [], iter(tangents)
            for slot in slots:
                ts.append(next(k) if slot else 0.0)
            return self._rule_tangent(custom, primals[:-1], primals[-1], ts, out.shape, loc)

        grads = self.transpose(body, args + [out], like, g)
        return [d if want else None for d, want in zip(grads, wants)]

    # ---- statements --------------------------------------------------------
    def block(self, frame, body):
        for k, stmt in enumerate(body):
            with at(frame.src.loc(stmt)):
                self.statement(frame, stmt)
            if k + 1 < len(body) and frame.loops and any(isinstance(frame.env.get(f), Value) for f in FLAGS):
                # a `break` or `continue` may have run: the rest of the body runs if neither did
                with at(frame.src.loc(body[k + 1])):
                    self.guard(frame, lambda: self.block(frame, body[k + 1:]), frame.src.loc(body[k + 1]), "if",
                               *[frame.env[f] for f in FLAGS])
                return

    # ---- value-dependent control flow (frontend/regions.py) -------------------
    def trace_branch(self, frame, run, presets=None):
        """Run `run` (a branch) into a sub-graph, on a copy of the frame's names; return (graph, names after)."""
        graph = Graph()
        saved = frame.env
        frame.env = dict(saved)
        frame.env.update(presets or {})
        frame.regions += 1
        if frame.loops:
            frame.loops[-1].depth += 1
        self.frozen.append(regions.lists_in(self._envs()))
        try:
            with building(graph):
                try:
                    run()
                except Escape:
                    pass
            return graph, frame.env
        finally:
            frame.env = saved
            frame.regions -= 1
            if frame.loops:
                frame.loops[-1].depth -= 1
            self.frozen.pop()

    def _envs(self):
        envs, seen = [], set()
        for f in self.frames:
            while f is not None and id(f) not in seen:
                seen.add(id(f))
                envs.append(f.env)
                f = f.parent
        return envs

    def branches(self, frame, pred, runs, loc, construct, presets=(None, None), guard=None):
        """An `if` on the 0-d boolean `pred`: `runs` (then, else) traced as the branches of one region
        (`guard`: the flags it tests when it is no `if` of the model's, but the rest of a loop's body
        running if no `break` or `continue` did)."""
        decided = regions.static_truth(pred)
        if decided is not None:
            frame.env.update(presets[0 if decided else 1] or {})
            runs[0 if decided else 1]()
            return
        traced = [self.trace_branch(frame, run, preset) for run, preset in zip(runs, presets)]
        graphs = [g for g, _ in traced]
        merged, outputs = regions.merge([e for _, e in traced], graphs, loc,
                                        ("after one branch", "after the other", construct))
        outs = regions.build_if(pred, graphs, outputs, loc, guard)
        frame.env = merged
        for (name, *_), v in zip(outputs, outs):
            frame.env[name] = v

    def guard(self, frame, run, loc, construct, *flags):
        """Run `run` under `if not (flag or ...)`, the flags known False inside it."""
        escaping = None
        for f in flags:
            if isinstance(f, Value):
                escaping = f if escaping is None else ops.logical("or", escaping, f)
        go = ops.logical_not(escaping, what="`not`")
        if go.name is None and go.node is not None:
            go.name = "go"
        tested = tuple(f for f in FLAGS if any(frame.env.get(f) is x for x in flags if isinstance(x, Value)))
        self.branches(frame, go, [run, lambda: None], loc, construct, ({f: False for f in FLAGS}, None),
                      guard=tested or ("break",))

    def _save_flags(self, frame):
        saved = {f: frame.env.get(f, MISSING) for f in FLAGS}
        frame.env["break"] = False
        frame.env["continue"] = False
        return saved

    def _restore_flags(self, frame, saved):
        for f, v in saved.items():
            if v is MISSING:
                frame.env.pop(f, None)
            else:
                frame.env[f] = v

    def check_list_change(self, base, what, loc):
        if any(id(base) in frozen for frozen in self.frozen):
            raise CompileError(f"{what} changes a list made outside the `if` or `while` on array values it is in",
                               loc, "A list's length is known at compile time: change it outside the "
                                    "value-dependent block, or use arrays (np.where, element assignment).")

    def statement(self, frame, s):
        kind = type(s)
        if kind in REJECTED_STATEMENTS:
            what, hint = REJECTED_STATEMENTS[kind]
            raise CompileError(f"{what} is not supported", frame.src.loc(s), hint)
        method = getattr(self, "stmt_" + kind.__name__, None)
        if method is None:
            raise CompileError(f"`{frame.src.segment(s).splitlines()[0]}` is not supported",
                               frame.src.loc(s))
        method(frame, s)

    def stmt_Expr(self, frame, s):
        if isinstance(s.value, ast.Constant) and isinstance(s.value.value, str):
            return  # docstring
        self.expr(frame, s.value)

    def stmt_Pass(self, frame, s):
        pass

    def stmt_FunctionDef(self, frame, s):
        if s.decorator_list:
            raise CompileError(f"a decorator on the nested function `{s.name}` is not supported",
                               frame.src.loc(s.decorator_list[0]), "Remove the decorator.")
        frame.env[s.name] = self.make_closure(frame, s, s.args)

    def stmt_Assign(self, frame, s):
        value = self.expr(frame, s.value)
        if len(s.targets) == 1:
            value = self._own_array(frame, s.targets[0], s.value, value)
        for target in s.targets:
            self.assign(frame, target, value)

    @staticmethod
    def _own_array(frame, target, expr, value):
        """`y = <expression>` makes a new array in NumPy, even where value numbering finds the same Value
        (`x - x` and np.zeros_like(x) are one constant; two `x * 2` are one node): for a name the model
        assigns into, bind a copy of its own, so that the alias check (frontend/assignment.py) sees only
        real sharing. `y = x` (a name), views and arguments stay what they are, except where arithmetic
        simplified to one of them (`y = x * 1.0` is a new array in NumPy, and the Value of x here)."""
        if (isinstance(target, ast.Name) and not isinstance(expr, ast.Name) and isinstance(value, Value)
                and target.id in assigned_into(frame.src)
                and (isinstance(expr, (ast.BinOp, ast.UnaryOp))
                     or value.node is not None and view_base(value) is value)):
            return ops.copy(value)
        return value

    def stmt_AnnAssign(self, frame, s):
        if s.value is None:
            return
        self.assign(frame, s.target, self._own_array(frame, s.target, s.value, self.expr(frame, s.value)))

    def stmt_AugAssign(self, frame, s):
        if not isinstance(s.target, (ast.Name, ast.Subscript)):
            self._reject_target(frame, s.target, augmented=True)
        current = self.expr(frame, s.target)
        value = self.binop(frame, s, current, s.op, self.expr(frame, s.value))
        if isinstance(s.target, ast.Name) and isinstance(current, Value) and current.ndim and isinstance(value, Value):
            name = s.target.id
            rebound = f"{name} = {name} {_BINOPS[type(s.op)][0]} {frame.src.segment(s.value)}"
            value = in_place(name, current, value, (frame, self.frames), frame.src.loc(s), rebound,
                             self._written(current))
        self.assign(frame, s.target, value)

    def stmt_If(self, frame, s):
        test = self.expr(frame, s.test)
        if isinstance(test, Value):
            loc = frame.src.loc(s)
            pred = condition(test, loc, "`if`", frame.src.segment(s.test))
            if pred.name is None and pred.node is not None:
                pred.name = "cond"
            self.branches(frame, pred, [lambda: self.block(frame, s.body), lambda: self.block(frame, s.orelse)],
                          loc, "if")
            return
        self.block(frame, s.body if test else s.orelse)

    def stmt_Return(self, frame, s):
        if frame.regions:
            raise CompileError("`return` inside an `if` or `while` on array values is not supported",
                               frame.src.loc(s), "Assign the value to one name on every path and return it "
                                                 "after the `if` or the loop.")
        value = None if s.value is None else self.expr(frame, s.value)
        self.return_loc = frame.src.loc(s)
        raise _Return(value)

    def stmt_Break(self, frame, s):
        if frame.loops and frame.loops[-1].flagged:
            frame.env["break"] = True
            raise Escape()
        raise _Break()

    def stmt_Continue(self, frame, s):
        if frame.loops and frame.loops[-1].flagged:
            frame.env["continue"] = True
            raise Escape()
        raise _Continue()

    def stmt_Assert(self, frame, s):
        test = self.expr(frame, s.test)
        if isinstance(test, Value):
            raise CompileError("`assert` on an array value is not supported", frame.src.loc(s),
                               "Assert on shapes or other values known at compile time, or remove it.")
        if not test:
            message = self.expr(frame, s.msg) if s.msg is not None else frame.src.segment(s.test)
            raise ShapeError(f"assertion failed: {message}", frame.src.loc(s))

    def stmt_For(self, frame, s):
        if s.orelse:
            raise CompileError("`for ... else` is not supported", frame.src.loc(s), "Remove the `else` block.")
        items = self.iterable(frame, s.iter)
        saved = self._save_flags(frame)
        frame.loops.append(Loop(region=False))
        try:
            for count, item in enumerate(items):
                if count >= MAX_ITERATIONS:
                    raise CompileError(f"the loop runs more than {MAX_ITERATIONS} times", frame.src.loc(s),
                                       "Loops unroll at compile time; vectorise with array operations instead.")
                broke = frame.env["break"]
                if broke is True:
                    break
                frame.env["continue"] = False
                self.assign(frame, s.target, item)
                if isinstance(broke, Value):  # a `break` on a value may have run: this iteration runs if not
                    self.guard(frame, lambda: self.block(frame, s.body), frame.src.loc(s), "for", broke)
                    continue
                try:
                    self.block(frame, s.body)
                except _Break:
                    break
                except _Continue:
                    continue
            if isinstance(frame.env["break"], Value):
                for name in regions.assigned_names([ast.Assign(targets=[s.target], value=s.iter)]):
                    if not isinstance(frame.env.get(name), Value):
                        frame.env[name] = Undefined(
                            name, f"`{name}`, the target of the `for` at line {s.lineno}, depends on where a "
                                  "`break` on an array value stopped the loop",
                            "Keep the value you need in a name of your own (an array or number) inside the loop.")
        finally:
            frame.loops.pop()
            self._restore_flags(frame, saved)

    def stmt_While(self, frame, s):
        """`while`: unrolled while its condition is known at compile time, then a loop region."""
        loc = frame.src.loc(s)
        if s.orelse:
            raise CompileError("`while ... else` is not supported", loc, "Remove the `else` block.")
        if isinstance(s.test, ast.Constant) and s.test.value and not any(
                isinstance(n, (ast.Break, ast.Return)) for n in ast.walk(ast.Module(body=s.body, type_ignores=[]))):
            raise CompileError("this `while` loop never ends: its condition is always true and no `break` leaves it",
                               loc, "Make the condition depend on the loop's values, or `break` on one.")
        saved = self._save_flags(frame)
        loop = Loop(region=False)
        frame.loops.append(loop)
        try:
            count = 0
            while not isinstance(frame.env["break"], Value):
                test = self.expr(frame, s.test)
                if isinstance(test, Value):
                    break
                if not test:
                    return
                if count >= MAX_ITERATIONS:
                    raise CompileError(f"the loop runs more than {MAX_ITERATIONS} times", loc,
                                       "A `while` on values known at compile time unrolls; vectorise, or make "
                                       "the condition depend on an array value.")
                count += 1
                frame.env["continue"] = False
                try:
                    self.block(frame, s.body)
                except _Break:
                    return
                except _Continue:
                    pass
                if frame.env["break"] is True:
                    return
            loop.region = True
            self.region_while(frame, s, loc)
        finally:
            frame.loops.pop()
            self._restore_flags(frame, saved)

    def region_while(self, frame, s, loc):
        """The loop as a region: its carried names found by tracing the body until they settle."""
        env = frame.env
        assigned = regions.assigned_names(s.body)
        # a name left Undefined by an earlier region (a temporary of a loop body) is as good as unbound here
        candidates = [n for n in assigned if n in env and not isinstance(env[n], Undefined) and n not in FLAGS]
        if regions.breaks(s.body):
            candidates.append("break")
        specs = {n: (env[n].shape, env[n].dtype, env[n].weak) for n in candidates if isinstance(env[n], Value)}
        for _ in range(len(candidates) + 2):
            order = [n for n in candidates if n in specs]
            body, after = self.trace_loop_body(frame, s, order, specs)
            if not self._settle(candidates, specs, env, after, loc):
                break
        else:  # pragma: no cover - each round makes one more name carried or one dtype wider
            raise CompileError("internal: the loop's carried values did not settle", loc)
        cond, go = self.trace_loop_condition(frame, s, order, specs, loc)
        if go is False:
            return  # the loop never runs
        with building(body):
            body.results = [regions.as_value(after[n], *specs[n][:2]) for n in order]
        captured, _ = regions.control.close_over([cond, body])
        inits = [regions.as_value(env[n], *specs[n][:2]) for n in order]
        outs = [(*specs[n][:2], specs[n][2], FLAG_NAMES.get(n, n)) for n in order]
        node = regions.control.region(regions.control.While, inits + captured,
                                      {"bodies": (cond, body), "carried": len(order)}, outs)
        for n, v in zip(order, node.outputs):
            env[n] = v
        for n in assigned:
            if n not in env or (isinstance(env[n], Undefined) and n not in order and n not in FLAGS):
                env[n] = Undefined(n, f"`{n}` is assigned only inside the `while` loop at line {s.lineno}, which "
                                      "may not run", "Assign it before the loop too (the value it has when the "
                                                     "loop does not run).")

    def _settle(self, candidates, specs, env, after, loc) -> bool:
        """Check the body's results against the carried specs; widen or add carried names. True: trace again."""
        changed = False
        for n in candidates:
            r = after.get(n, MISSING)
            shown = FLAG_NAMES.get(n, n)
            if isinstance(r, Undefined):
                raise r.error(loc)
            if n in specs:
                shape, dtype, weak = specs[n]
                if is_number(r):
                    continue
                if not isinstance(r, Value):
                    raise CompileError(f"`{shown}` is an array before the `while` loop and "
                                       f"{_describe(r)} after an iteration", loc,
                                       "A value-dependent loop keeps each name an array (or number) of one "
                                       "shape and dtype.")
                if r.shape != shape:
                    raise CompileError(f"`{shown}` has shape {shape} before the `while` loop and {r.shape} after "
                                       "an iteration; a value-dependent loop keeps each name's shape and dtype",
                                       loc, "Give it its final shape before the loop (np.zeros(...)).")
                if r.dtype != dtype:
                    if weak and not r.weak:  # a Python number before the loop takes the array's dtype
                        specs[n] = (shape, r.dtype, False)
                        changed = True
                        continue
                    raise CompileError(f"`{shown}` is {dtype} before the `while` loop and {r.dtype} after an "
                                       "iteration; a value-dependent loop keeps each name's shape and dtype", loc,
                                       "Give it its final dtype before the loop.")
                continue
            init = env[n] if n != "break" else False
            if r is init or (is_number(r) and is_number(init) and type(r) is type(init) and r == init):
                continue
            if is_number(init) and (is_number(r) or isinstance(r, Value)):
                dtype = regions.number_dtype([init] + ([r] if is_number(r) else []))
                weak = dtype.kind == "f"  # a Python float adapts to float32 arrays; an int counts as int64
                if isinstance(r, Value):
                    if r.shape != ():
                        raise CompileError(f"`{shown}` is a number before the `while` loop and an array of shape "
                                           f"{r.shape} after an iteration", loc,
                                           "Give it its final shape before the loop (np.zeros(...)).")
                    dtype = np.result_type(dtype, r.dtype) if r.weak else r.dtype
                    weak = r.weak
                specs[n] = ((), np.dtype(dtype), weak)
                changed = True
                continue
            try:
                same = type(r) is type(init) and bool(r == init)
            except Exception:  # noqa: BLE001 - objects without a comparison
                same = False
            if not same:
                raise CompileError(f"`{shown}` ({_describe(init)}) changes inside the `while` loop on array values",
                                   loc, "Only arrays and numbers may change in a value-dependent loop.")
        return changed

    def trace_loop_body(self, frame, s, order, specs):
        body = Graph()
        saved = frame.env
        frame.env = dict(saved)
        frame.regions += 1
        self.frozen.append(regions.lists_in(self._envs()))
        try:
            with building(body):
                for n, p in zip(order, _carried_params(frame, body, order, specs)):
                    if isinstance(saved.get(n), Value):
                        self.carried[p] = saved[n]
                frame.env["break"] = False   # the body runs only when no `break` has
                frame.env["continue"] = False
                try:
                    self.block(frame, s.body)
                except Escape:
                    pass
            return body, frame.env
        finally:
            frame.env = saved
            frame.regions -= 1
            self.frozen.pop()

    def trace_loop_condition(self, frame, s, order, specs, loc):
        """The condition as a sub-graph of the carried values (and `not break`); (graph, its 0-d bool or a bool)."""
        cond = Graph()
        saved = frame.env
        frame.env = dict(saved)
        frame.regions += 1
        try:
            with building(cond), at(loc):
                _carried_params(frame, cond, order, specs)
                test = self.expr(frame, s.test)
                if isinstance(test, Value):
                    test = condition(test, loc, "`while`", frame.src.segment(s.test))
                else:
                    test = bool(test)
                broke = frame.env.get("break") if "break" in order else False
                go = test
                if isinstance(broke, Value) and test is not False:
                    go = ops.logical_not(broke, what="`not`")
                    if test is not True:
                        go = ops.logical("and", go, test)
                if go is True:
                    raise CompileError("this `while` loop never ends: its condition is always true and no `break` "
                                       "leaves it", loc, "Make the condition depend on the loop's values, or "
                                                         "`break` on one.")
                if go is not False:
                    cond.results = [go]
            return cond, go
        finally:
            frame.env = saved
            frame.regions -= 1

    def iterable(self, frame, node):
        it = self.expr(frame, node)
        if isinstance(it, (range, list, tuple)):
            return it
        if isinstance(it, dict):  # a parameter tree's dict, or a dict the model made: its keys, as Python loops
            return list(it)
        if isinstance(it, Value):
            if it.ndim == 0:
                raise CompileError("cannot loop over a 0-d array", frame.src.loc(node))
            return (ops.index(it, i) for i in range(it.shape[0]))
        raise CompileError(f"cannot loop over {_describe(it)}", frame.src.loc(node),
                           "Loop over range(n) with n known at compile time.")

    # ---- assignment --------------------------------------------------------
    def assign(self, frame, target, value):
        if isinstance(target, ast.Name):
            if isinstance(value, Value) and value.name is None and value.node is not None:
                value.name = target.id
            frame.env[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            items = self.unpack(frame, target, value)
            for t, v in zip(target.elts, items):
                self.assign(frame, t, v)
        elif isinstance(target, ast.Subscript):
            self.assign_item(frame, target, value)
        else:
            self._reject_target(frame, target)

    def assign_item(self, frame, target, value):
        """`y[i] = v`: a list's entry is set as in Python; an array gets a new version bound to its name
        (frontend/assignment.py says when that is what NumPy would do)."""
        loc = frame.src.loc(target)
        if not isinstance(target.value, ast.Name):
            raise CompileError(f"assigning into `{frame.src.segment(target)}` is not supported", loc,
                               "Assign into a named array with one index: `y[i, j] = v`, not `y[i][j] = v`.")
        name = target.value.id
        current = self.expr(frame, target.value)
        index = self.expr(frame, target.slice)
        if isinstance(current, list):
            if isinstance(index, Value):
                raise CompileError("indexing a list with an array is not supported", loc)
            self.check_list_change(current, f"`{frame.src.segment(target)} = ...`", loc)
            try:
                current[index] = value
            except (IndexError, TypeError) as e:
                raise CompileError(f"`{frame.src.segment(target)} = ...`: {e}", loc) from None
            return
        if not isinstance(current, Value):
            raise CompileError(f"cannot assign into {_describe(current)}", loc,
                               "Assign into arrays the model makes (np.zeros(n), ...) or into lists.")
        scope = frame
        while scope is not None and name not in scope.env:
            scope = scope.parent
        if scope is None:
            raise CompileError(f"cannot assign into the global `{name}`", loc, "Make a local array.")
        check_unshared(name, self._written(current), scope, self.frames, loc)
        new = ops.set_index(current, index, value, name)
        new.name = name
        scope.env[name] = new

    def _written(self, current):
        """The array NumPy writes into when the model assigns into `current`: a `while` body's carried param
        is the array from before the loop."""
        while current in self.carried:
            current = self.carried[current]
        return current

    def unpack(self, frame, target, value):
        n = len(target.elts)
        if any(isinstance(t, ast.Starred) for t in target.elts):
            raise CompileError("starred assignment is not supported", frame.src.loc(target),
                               "Unpack a fixed number of values.")
        if isinstance(value, Value):
            if value.ndim == 0 or value.shape[0] != n:
                raise ShapeError(f"cannot unpack {_describe(value)} into {n} names", frame.src.loc(target))
            return [ops.index(value, i) for i in range(n)]
        if not isinstance(value, (tuple, list)) or len(value) != n:
            raise CompileError(f"cannot unpack {_describe(value)} into {n} names", frame.src.loc(target))
        return list(value)

    def _reject_target(self, frame, target, augmented=False):
        text = frame.src.segment(target)
        if isinstance(target, ast.Attribute):
            raise CompileError(f"assigning to an attribute (`{text} = ...`) is not supported",
                               frame.src.loc(target), "Use a local variable.")
        raise CompileError(f"cannot assign to `{text}`", frame.src.loc(target))

    # ---- expressions -------------------------------------------------------
    def expr(self, frame, node):
        kind = type(node)
        if kind in REJECTED_EXPRESSIONS:
            what, hint = REJECTED_EXPRESSIONS[kind]
            raise CompileError(f"{what} is not supported", frame.src.loc(node), hint)
        method = getattr(self, "expr_" + kind.__name__, None)
        if method is None:
            raise CompileError(f"`{frame.src.segment(node)}` is not supported", frame.src.loc(node))
        with at(frame.src.loc(node)):
            return method(frame, node)

    def expr_Constant(self, frame, node):
        if isinstance(node.value, (bytes, complex)):
            raise CompileError(f"the constant {node.value!r} is not supported", frame.src.loc(node))
        return node.value

    def expr_Name(self, frame, node):
        name = node.id
        scope = frame
        while scope is not None:
            if name in scope.env:
                value = scope.env[name]
                if isinstance(value, Undefined):
                    raise value.error(frame.src.loc(node))
                return value
            if scope.owner is not None and name in scope.owner.locals:
                raise CompileError(f"`{name}` is read before it is assigned in `{scope.owner.name}`",
                                   frame.src.loc(node),
                                   f"Assign `{name}` first, or give it another name than the enclosing "
                                   "function's: a name a function assigns is its own everywhere in it.")
            scope = scope.parent
        if name in frame.globals:
            return self.global_value(frame, name, frame.globals[name], node)
        if hasattr(builtins, name):
            return _Callable(name, getattr(self, "builtin_" + name, None))
        raise CompileError(f"name `{name}` is not defined", frame.src.loc(node),
                           suggest.name_hint(name, list(frame.env) + list(frame.globals)))

    def global_value(self, frame, name, obj, node):
        if obj is np:
            return NUMPY
        if obj is math:
            return MATH
        if isinstance(obj, (bool, int, float, np.number)) or (isinstance(obj, tuple) and all(
                isinstance(x, (int, float)) for x in obj)):
            return obj
        if getattr(obj, "batched_kind", None) == "vmap":
            return _Batched(obj)
        if getattr(obj, "batched_kind", None) is not None:
            raise CompileError(f"`{name}` is a per-example gradient function (sb.per_example_grad, or sb.vmap of "
                               "sb.grad), which a model cannot call", frame.src.loc(node),
                               "Call an sb.vmap function of a model, or an sb.grad function, or compute the "
                               "per-example gradients outside the model.")
        if getattr(obj, "__symbackprop__", False):
            entry = getattr(obj, "derivative_entry", None)
            if entry in CALLABLE_DERIVATIVES and not getattr(obj, "has_aux", False) \
                    and getattr(obj, "memory_budget", None) is None:
                return _Derivative(obj, entry)
            what = f"an sb.{entry} function with has_aux or memory_budget" if entry in CALLABLE_DERIVATIVES \
                else f"a compiled {entry or 'train step'} function"
            raise CompileError(f"`{name}` is {what}, which a model cannot call", frame.src.loc(node),
                               "Call an sb.grad, value_and_grad, jvp, vjp, jacobian, hessian or hvp function "
                               "(without has_aux or memory_budget), or the original model.")
        if isinstance(obj, (CustomVJP, CustomJVP)):
            return _CustomHelper(obj)
        if obj is ops.stop_gradient:  # from symbackprop import stop_gradient
            return _Callable("sb.stop_gradient", ops.stop_gradient)
        if isinstance(obj, types.FunctionType):
            return _Helper(obj)
        if isinstance(obj, types.ModuleType):
            return self.module_value(frame, name, obj, node)
        fname = getattr(obj, "__name__", None)
        if fname and getattr(np, fname, None) is obj:
            return self.module_attr(NUMPY, fname, node, frame)
        if fname and getattr(math, fname, None) is obj:
            return self.module_attr(MATH, fname, node, frame)
        if isinstance(obj, np.ndarray):
            raise CompileError(f"the global array `{name}` cannot be used inside a model", frame.src.loc(node),
                               "Pass it as a parameter.")
        raise CompileError(f"`{name}` ({type(obj).__name__}) cannot be used inside a model", frame.src.loc(node))

    def module_value(self, frame, name, module, node):
        """A module the model names: a NumPy submodule, or a module of the user's whose functions are inlined."""
        if module.__name__ == "symbackprop":  # import symbackprop as sb: sb.stop_gradient
            return _Module(name, namespace.SYMBACKPROP, {}, module)
        if module.__name__.startswith("numpy."):  # import numpy.linalg as la
            sub = module.__name__.split(".")[1]
            return _Module(f"np.{sub}", namespace.SUBMODULES.get(sub, {}), {}, module)
        if _is_stdlib(module):
            raise CompileError(f"the module `{name}` ({module.__name__}) cannot be used inside a model",
                               frame.src.loc(node),
                               f"A model calls NumPy (np.), math and functions written in its language. "
                               f"{suggest.DOCS_HINT}")
        return _UserModule(name, module)

    def module_attr(self, module, attr, node, frame):
        if attr in module.constants:
            return module.constants[attr]
        if attr in module.functions:
            return _Callable(f"{module.name}.{attr}", module.functions[attr], module)
        real = getattr(module.real, attr, None)
        if module is NUMPY and isinstance(real, types.ModuleType):  # np.linalg: its functions get their hints
            return _Module(f"np.{attr}", namespace.SUBMODULES.get(attr, {}), {}, real)
        hint = suggest.module_hint(module.name, attr, list(module.functions) + list(module.constants),
                                   exists=hasattr(module.real, attr))
        raise CompileError(f"`{module.name}.{attr}` is not supported", frame.src.loc(node), hint)

    def user_module_attr(self, module, attr, node, frame):
        """`helpers.gelu`: what `gelu` would be as a global of the model's module (a helper, a constant...)."""
        label = f"{module.name}.{attr}"
        if not hasattr(module.module, attr):
            public = [n for n in vars(module.module) if not n.startswith("_")]
            close = suggest.typo_matches(attr, public)
            raise CompileError(f"module `{module.name}` has no attribute `{attr}`", frame.src.loc(node),
                               f"Did you mean {', '.join(f'{module.name}.{c}' for c in close)}?" if close else None)
        return self.global_value(frame, label, getattr(module.module, attr), node)

    def expr_Attribute(self, frame, node):
        base = self.expr(frame, node.value)
        attr = node.attr
        if isinstance(base, _Module):
            return self.module_attr(base, attr, node, frame)
        if isinstance(base, _UserModule):
            return self.user_module_attr(base, attr, node, frame)
        if isinstance(base, Value):
            if attr in namespace.ATTRIBUTES:
                return namespace.ATTRIBUTES[attr](base)
            if attr in namespace.METHODS:
                return _Callable(f".{attr}", namespace.METHODS[attr], base)
            accepted = list(namespace.ATTRIBUTES) + list(namespace.METHODS)
            hint = suggest.method_hint(attr, accepted)
            supported = "Supported: " + ", ".join(f".{m}" for m in accepted)
            raise CompileError(f"the array attribute or method `.{attr}` is not supported", frame.src.loc(node),
                               f"{hint}\n  {supported}" if hint else supported)
        if isinstance(base, _DefaultList) and attr in _LIST_METHODS and attr != "copy":
            raise CompileError(f"`.{attr}` on a default list: Python shares a default between calls, so each call "
                               "would change what the next one sees", frame.src.loc(node),
                               "Make the list in the body (hs = []), or default to None and write "
                               "`hs = [] if hs is None else hs`.")
        if isinstance(base, list) and attr in _LIST_METHODS:
            if attr != "copy":
                self.check_list_change(base, f"`{frame.src.segment(node)}`", frame.src.loc(node))
            return _Callable(f".{attr}", getattr(base, attr))
        if isinstance(base, (list, tuple)) and attr in ("append", "extend", "pop", "insert", "remove", "index",
                                                        "count", "sort", "reverse", "clear", "copy"):
            if isinstance(base, tuple):
                raise CompileError(f"a tuple has no `.{attr}`: tuples cannot change", frame.src.loc(node),
                                   "Use a list: hs = [], then hs.append(h); collect with np.stack(hs).")
            raise CompileError(f"the list method `.{attr}` is not supported", frame.src.loc(node),
                               f"Lists support {', '.join('.' + m for m in _LIST_METHODS)}, indexing, len() "
                               "and loops.")
        if isinstance(base, dict) and attr in ("items", "keys", "values"):
            return _Callable(f".{attr}", lambda: list(getattr(base, attr)()))
        if isinstance(base, dict) and attr == "get":
            return _Callable(".get", base.get)
        if isinstance(base, (int, float)) and attr in ("real", "imag"):
            return getattr(base, attr)
        raise CompileError(f"`{frame.src.segment(node)}` is not supported ({_describe(base)} has no "
                           f"attribute the compiler knows)", frame.src.loc(node))

    def expr_BinOp(self, frame, node):
        left = self.expr(frame, node.left)
        right = self.expr(frame, node.right)
        return self.binop(frame, node, left, node.op, right)

    def binop(self, frame, node, left, op, right):
        symbol, fn = _BINOPS[type(op)]
        for side in (left, right):
            if not isinstance(side, (Value, numbers.Number, np.number, np.bool_)):
                if isinstance(left, (tuple, list)) and isinstance(right, (tuple, list)) and symbol == "+":
                    return tuple(left) + tuple(right)
                raise CompileError(f"`{symbol}` cannot take {_describe(side)}", frame.src.loc(node))
        if fn is None:
            if _has_value(left, right) and symbol == "%":
                return compositions.remainder(left, right)   # Python's % on arrays is np.remainder
            if _has_value(left, right):
                raise CompileError(f"`{symbol}` on arrays is not supported", frame.src.loc(node),
                                   "Only + - * / ** @ % act on arrays.")
            return _STATIC_BINOPS[type(op)](left, right)
        return fn(left, right)

    def expr_UnaryOp(self, frame, node):
        value = self.expr(frame, node.operand)
        if isinstance(node.op, ast.USub):
            return ops.neg(value)
        if isinstance(node.op, ast.UAdd):
            return value
        if isinstance(node.op, ast.Not):
            if isinstance(value, Value):
                if value.size != 1:
                    raise CompileError("`not` on an array is not supported", frame.src.loc(node),
                                       "Use ~(condition) for an elementwise not, or np.any/np.all for one decision.")
                return ops.logical_not(condition(value, frame.src.loc(node), "`not`", ""), what="`not`")
            return not value
        if isinstance(value, Value):
            return ops.logical_not(value)
        return ~value

    def expr_BoolOp(self, frame, node):
        """`and`/`or`: Python's on static values; on 0-d booleans (conditions), the logical and/or."""
        word = "and" if isinstance(node.op, ast.And) else "or"
        result, pending = None, None
        for part in node.values:
            x = self.expr(frame, part)
            if isinstance(x, Value):
                if x.size != 1 or x.dtype.kind != "b":
                    symbol = "&" if word == "and" else "|"
                    what = "array values" if x.size != 1 else "a non-boolean array value"
                    raise CompileError(f"`{word}` on {what} is not supported", frame.src.loc(node),
                                       f"Use {symbol} between comparisons in parentheses: (a > 0) {symbol} (b > 0); "
                                       f"for one decision on arrays, np.any(...) {word} np.all(...).")
                x = ops.reshape(x, ()) if x.shape != () else x
                pending = x if pending is None else ops.logical(word, pending, x)
                continue
            if pending is None:
                if (word == "and") != bool(x):
                    return x
                result = x
            elif (word == "and") != bool(x):
                return x  # `v and False` is false, `v or True` true, whichever v is
        return pending if pending is not None else result

    def expr_Compare(self, frame, node):
        left = self.expr(frame, node.left)
        result = None
        for op, right_node in zip(node.ops, node.comparators):
            right = self.expr(frame, right_node)
            if type(op) not in _COMPARE:
                if _has_value(left, right):
                    raise CompileError(f"`{type(op).__name__}` comparison of arrays is not supported",
                                       frame.src.loc(node), "Use <, <=, >, >=, == or !=.")
                part = {ast.Is: operator.is_, ast.IsNot: operator.is_not, ast.In: lambda a, b: a in b,
                        ast.NotIn: lambda a, b: a not in b}[type(op)](left, right)
            else:
                part = ops.compare(_COMPARE[type(op)], left, right)
            if result is None:
                result = part
            elif _has_value(result, part):
                result = ops.logical("and", result, part)
            else:
                result = result and part
            left = right
        return result

    def expr_IfExp(self, frame, node):
        test = self.expr(frame, node.test)
        if isinstance(test, Value):
            cond, loc = frame.src.segment(node.test), frame.src.loc(node)
            pred = condition(test, loc, f"`... if {cond} else ...`", cond, parenthesised=False)

            def side(e):
                return lambda: frame.env.__setitem__(IFEXP, self.expr(frame, e))

            self.branches(frame, pred, [side(node.body), side(node.orelse)], loc, "if")
            result = frame.env.pop(IFEXP)
            if isinstance(result, Undefined):
                raise CompileError(f"the two sides of `... if {cond} else ...` on an array value must be arrays or "
                                   "numbers", loc, f"Use np.where({cond}, a, b) to choose element by element.")
            return result
        return self.expr(frame, node.body if test else node.orelse)

    def expr_NamedExpr(self, frame, node):
        value = self.expr(frame, node.value)
        self.assign(frame, node.target, value)
        return value

    def expr_Tuple(self, frame, node):
        return tuple(self.expr(frame, e) for e in node.elts)

    def expr_Dict(self, frame, node):
        """A dict with keys known at compile time (aux trees: `return loss, {"accuracy": acc}`)."""
        result = {}
        for k, v in zip(node.keys, node.values):
            if k is None:
                raise CompileError("`**` unpacking in a dict is not supported", frame.src.loc(node),
                                   "Write the entries one by one.")
            key = self.expr(frame, k)
            if isinstance(key, Value) or not isinstance(key, (str, int, bool, float, type(None))):
                raise CompileError(f"a dict key must be a string or number known at compile time, got "
                                   f"{_describe(key)}", frame.src.loc(k))
            result[key] = self.expr(frame, v)
        return result

    def expr_List(self, frame, node):
        return [self.expr(frame, e) for e in node.elts]

    def expr_Lambda(self, frame, node):
        return self.make_closure(frame, node, node.args)

    def expr_ListComp(self, frame, node):
        return self.comprehension(frame, node)

    def expr_GeneratorExp(self, frame, node):
        return self.comprehension(frame, node)   # consumed whole by what takes it (np.stack, sum, ...)

    def comprehension(self, frame, node):
        """[elt for t in xs if c ...]: its targets are its own names; the first iterable is read outside."""
        inner = _Frame(frame.src, {}, parent=frame)
        out = []
        self.frames.append(inner)

        def run(level):
            if level == len(node.generators):
                out.append(self.expr(inner, node.elt))
                return
            g = node.generators[level]
            if g.is_async:
                raise CompileError("`async for` is not supported", frame.src.loc(node), "Models are plain functions.")
            for count, item in enumerate(self.iterable(inner if level else frame, g.iter)):
                if count >= MAX_ITERATIONS:
                    raise CompileError(f"the comprehension runs more than {MAX_ITERATIONS} times",
                                       frame.src.loc(node), "Vectorise with array operations instead.")
                self.assign(inner, g.target, item)
                if all(self.static_condition(inner, c, "a comprehension's `if`") for c in g.ifs):
                    run(level + 1)

        try:
            run(0)
        finally:
            self.frames.pop()
        return out

    def static_condition(self, frame, node, what):
        test = self.expr(frame, node)
        if isinstance(test, Value):
            cond = frame.src.segment(node)
            raise CompileError(f"{what} on an array value ({cond}) is not supported", frame.src.loc(node),
                               f"Use np.where({cond}, a, b) to choose element by element.")
        return test

    def expr_Slice(self, frame, node):
        parts = [None if p is None else self.expr(frame, p) for p in (node.lower, node.upper, node.step)]
        for p in parts:
            if isinstance(p, Value):
                raise CompileError("slice bounds must be known at compile time, not arrays", frame.src.loc(node),
                                   "Use constants, shapes or loop indices as bounds.")
        return slice(*parts)

    def expr_Subscript(self, frame, node):
        base = self.expr(frame, node.value)
        index = self.expr(frame, node.slice)
        if isinstance(base, Value):
            if gather.has_index_array(index):
                return gather.gather(base, index)
            return ops.index(base, index)
        if isinstance(base, dict):
            if isinstance(index, Value) or index not in base:
                raise CompileError(f"`{frame.src.segment(node)}`: no key {index!r} (the keys: "
                                   f"{', '.join(map(repr, base))})", frame.src.loc(node))
            return base[index]
        if isinstance(base, (tuple, list, range)):
            if isinstance(index, Value):
                raise CompileError("indexing a tuple with an array is not supported", frame.src.loc(node))
            try:
                item = base[index]
            except (IndexError, TypeError) as e:
                raise CompileError(f"`{frame.src.segment(node)}`: {e}", frame.src.loc(node)) from None
            return tuple(item) if isinstance(item, list) else item
        raise CompileError(f"cannot index {_describe(base)}", frame.src.loc(node))

    def expr_Call(self, frame, node):
        fn = self.expr(frame, node.func)
        args = [self.expr(frame, a) for a in node.args]
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise CompileError("`**` unpacking in a call is not supported", frame.src.loc(node),
                                   "Pass keyword arguments one by one.")
            kwargs[kw.arg] = self.expr(frame, kw.value)
        loc = frame.src.loc(node)
        if isinstance(fn, _Helper):
            return self.call(fn.fn, args, kwargs, loc)
        if isinstance(fn, Closure):
            return self.call_closure(fn, args, kwargs, loc)
        if isinstance(fn, _CustomHelper):
            return self.call_custom(fn.custom, args, kwargs, loc)
        if isinstance(fn, _Derivative):
            return self.call_derivative(fn, args, kwargs, loc)
        if isinstance(fn, _Batched):
            return self.call_batched(fn.batched, args, kwargs, loc)
        if isinstance(fn, _Callable):
            return self.call_builtin(frame, node, fn, args, kwargs)
        raise CompileError(f"{_describe(fn)} is not callable", loc)

    def call_batched(self, batched, args, kwargs, loc):
        """sb.vmap(f)(...) inside a model: f traced on one example's shapes, then batched at the call."""
        fn = batched.fn
        try:
            bound = inspect.signature(fn).bind(*args, **kwargs)
        except TypeError as e:
            raise CompileError(f"the sb.vmap function of `{fn.__name__}`: {e}", loc) from None
        bound.apply_defaults()
        names, values = list(bound.arguments), list(bound.arguments.values())
        option = batched.in_axes
        if isinstance(option, int):
            axes = [option if isinstance(v, Value) and v.ndim else None for v in values]
        else:
            axes = list(option)
        sizes = set()
        for i, (name, v, axis) in enumerate(zip(names, values, axes)):
            if axis is None:
                continue
            if not isinstance(v, Value) or not -v.ndim <= axis < v.ndim:
                raise CompileError(f"the sb.vmap function of `{fn.__name__}` maps `{name}` over axis {axis}, but "
                                   f"it is {_describe(v)} here", loc)
            axes[i] = axis % v.ndim
            sizes.add(v.shape[axes[i]])
        if len(sizes) != 1:
            what = "no argument with an axis to map over" if not sizes else f"batch sizes {sorted(sizes)}"
            raise CompileError(f"the sb.vmap function of `{fn.__name__}` is called with {what}", loc)

        def body(inputs):
            self.return_loc = None
            out = self.call(fn, inputs, {}, loc)
            if not isinstance(out, Value) or out.dtype.kind != "f":
                raise CompileError(f"the model `{fn.__name__}` of an sb.vmap call returns {_describe(out)}; it "
                                   "must return a float array or number here", self.return_loc or loc)
            return out

        return self.vectorize(body, values, axes, names)

    def call_derivative(self, d, args, kwargs, loc):
        """sb.grad(f)(...) inside a model: f inlined here, then differentiated by the pipeline's hook."""
        compiled, entry = d.compiled, d.entry
        fn, name = compiled.fn, compiled.fn.__name__
        keyword = CALLABLE_DERIVATIVES[entry]
        directions = None
        if keyword is not None:
            if keyword not in kwargs:
                raise CompileError(f"the sb.{entry} function of `{name}` is called without `{keyword}=`", loc,
                                   f"Pass the direction: {name}_{entry}(..., {keyword}=...).")
            directions = kwargs.pop(keyword)
            directions = [directions] if compiled.single or entry == "vjp" else list(directions)
        try:
            bound = inspect.signature(fn).bind(*args, **kwargs)
        except TypeError as e:
            raise CompileError(f"call of the sb.{entry} function of `{name}`: {e}", loc) from None
        bound.apply_defaults()
        values = list(bound.arguments.values())
        names = list(bound.arguments)
        wrt = []
        for i in compiled.wrt:
            v = values[i]
            if not isinstance(v, Value) or v.dtype.kind != "f":
                v = ops.as_value(float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
            if not isinstance(v, Value) or v.dtype.kind != "f":
                raise CompileError(f"sb.{entry} of `{name}` differentiates `{names[i]}`, which is "
                                   f"{_describe(v)} here; pass a float array or number", loc)
            values[i] = v
            wrt.append(v)
        if entry == "vjp":  # one cotangent, shaped like the result (checked once it is traced)
            (cotangent,) = directions
            if not isinstance(cotangent, (Value, int, float)) or isinstance(cotangent, bool):
                raise CompileError(f"`cotangent=` of the sb.vjp function of `{name}` is {_describe(cotangent)}; "
                                   "pass an array shaped like its result", loc)
            directions = [ops.as_value(cotangent) if not isinstance(cotangent, Value) else cotangent]
        elif directions is not None:
            if len(directions) != len(wrt):
                raise CompileError(f"`{keyword}=` of the sb.{entry} function of `{name}` needs {len(wrt)} "
                                   "arrays, one per parameter it differentiates", loc)
            directions = [ops.as_value(t, like=w) for t, w in zip(directions, wrt)]
            for t, w in zip(directions, wrt):
                if t.shape != w.shape:
                    raise CompileError(f"`{keyword}=` of the sb.{entry} function of `{name}` has shape "
                                       f"{t.shape} for a parameter of shape {w.shape}", loc)
        def body(inputs):
            self.return_loc = None
            out = self.call(fn, inputs, {}, loc)
            if not isinstance(out, Value) or out.dtype.kind != "f" or (out.shape != () and entry not in _ARRAY_RESULT):
                what = "a float array or number" if entry in _ARRAY_RESULT else "one float scalar"
                raise CompileError(f"the model `{name}` of an sb.{entry} call returns {_describe(out)}; it "
                                   f"must return {what} here", self.return_loc or loc)
            if entry == "vjp" and directions[0].shape != out.shape:
                raise CompileError(f"`cotangent=` of the sb.vjp function of `{name}` has shape "
                                   f"{directions[0].shape}; its result has shape {out.shape}", loc)
            return out

        out, result = self.derivatives(entry, body, values, names, list(compiled.wrt), directions)
        one = compiled.single
        if entry == "value_and_grad":
            return out, result[0] if one else tuple(result)
        if entry == "grad":
            return result[0] if one else tuple(result)
        if entry == "jvp":
            return out, result
        if entry == "vjp":
            return out, result[0] if one else tuple(result)
        if entry == "hessian":  # row-major blocks H[i][j]
            k = len(compiled.wrt)
            return result[0] if one else tuple(tuple(result[i * k:(i + 1) * k]) for i in range(k))
        return result[0] if one else tuple(result)

    def call_builtin(self, frame, node, fn, args, kwargs):
        loc = frame.src.loc(node)
        if fn.impl is None:
            raise CompileError(f"`{fn.label}()` is not supported", loc,
                               "Print outside the model, on the value the gradient function returns."
                               if fn.label == "print" else suggest.DOCS_HINT)
        for k in ("out", "dtype", "where", "initial", "order", "casting"):
            if k in kwargs and not (k == "dtype" and fn.label in _MAKERS):
                raise CompileError(f"`{fn.label}(..., {k}=...)` is not supported", loc,
                                   f"Remove `{k}=`: generated code chooses its own.")
        if isinstance(kwargs.get("dtype"), _Callable):   # dtype=np.float32: the type its name says
            kwargs["dtype"] = kwargs["dtype"].label.removeprefix("np.")
        if fn.owner is MATH:
            for a in args:
                if isinstance(a, Value) and a.ndim > 0:
                    raise CompileError(f"`{fn.label}` takes a scalar, got {_describe(a)}", loc,
                                       f"Use np.{fn.label.split('.')[1]} on arrays.")
        if fn.owner is NUMPY and fn.label not in ("np.concatenate", "np.stack", "np.array"):
            reduced = _list_argument(fn, args, kwargs, loc)
            if reduced is not None:
                return reduced
        call_args = ([fn.owner] if isinstance(fn.owner, Value) else []) + list(args)
        try:
            inspect.signature(fn.impl).bind(*call_args, **kwargs)
        except TypeError as e:
            raise CompileError(f"`{fn.label}()`: {e}", loc) from None
        except ValueError:  # builtins without a signature
            pass
        try:
            return fn.impl(*call_args, **kwargs)
        except CompileError as e:
            if e.loc is None:  # raised by a builtin that had no location at hand
                raise CompileError(e.detail, loc, e.hint) from None
            raise

    # ---- Python builtins the language allows ------------------------------
    builtin_range = staticmethod(lambda *a: _static_call("range", range, a))
    builtin_len = staticmethod(lambda x: x.shape[0] if isinstance(x, Value) and x.ndim else
                               _static_call("len", len, (x,)))
    builtin_abs = staticmethod(lambda x: ops.absolute(x))
    builtin_zip = staticmethod(lambda *xs: list(zip(*[_seq(x) for x in xs])))
    builtin_enumerate = staticmethod(lambda xs, start=0: list(enumerate(_seq(xs), start)))
    builtin_reversed = staticmethod(lambda xs: list(reversed(_seq(xs))))
    builtin_tuple = staticmethod(lambda xs=(): tuple(_seq(xs)))
    builtin_list = staticmethod(lambda xs=(): list(_seq(xs)))

    @staticmethod
    def builtin_float(x=0.0):
        if isinstance(x, Value):
            if x.ndim:
                raise CompileError(f"float() of {_describe(x)}", None, "Reduce it to a scalar first.")
            return x
        return float(x)

    @staticmethod
    def builtin_int(x=0):
        if isinstance(x, Value):
            raise CompileError("int() of an array value is not supported", None,
                               "Integers must be known at compile time.")
        return int(x)

    @staticmethod
    def builtin_min(*xs):
        return _fold(xs, ops.minimum, builtins.min)

    @staticmethod
    def builtin_max(*xs):
        return _fold(xs, ops.maximum, builtins.max)

    @staticmethod
    def builtin_sum(xs, start=0):
        total = start
        for x in _seq(xs):
            total = ops.add(total, x)
        return total


def _carried_params(frame, graph, order, specs):
    """A param of `graph` for each carried name of a loop, bound to the name in the frame; the params."""
    made = []
    for n in order:
        shape, dtype, weak = specs[n]
        p = Value(shape, dtype, None, FLAG_NAMES.get(n, n))
        p.weak = weak
        graph.params.append(p)
        frame.env[n] = p
        made.append(p)
    return made


#: the functions making an array, which take dtype= (a float dtype: see namespace._float_dtype)
_MAKERS = ("np.zeros", "np.ones", "np.full", "np.array", "np.arange", "np.linspace", "np.eye", "np.identity",
           "np.tri")


def _list_argument(fn, args, kwargs, loc):
    """np.sum([1.0, 2.0]) computed as NumPy does; a CompileError naming the stacked form for a list of arrays."""
    for a in args:
        if not isinstance(a, (list, tuple)):
            continue
        if not any(isinstance(x, Value) for x in a):
            if fn.label in suggest.LIST_ARGUMENTS and a is args[0] and all(
                    isinstance(x, (numbers.Number, np.number)) for x in a):
                with np.errstate(all="ignore"):
                    return getattr(np, fn.label[3:])(a, *args[1:], **kwargs)
            continue
        stacked, elementwise = suggest.LIST_ARGUMENTS.get(fn.label, (f"{fn.label}(np.stack([a, b]), ...)", None))
        raise CompileError(f"`{fn.label}` of a {type(a).__name__} of arrays is not supported", loc,
                           f"Stack them into one array first: {stacked}"
                           + (f"; elementwise, {elementwise}." if elementwise else "."))
    return None


def _seq(x):
    if isinstance(x, Value):
        return [ops.index(x, i) for i in range(x.shape[0])]
    if isinstance(x, (list, tuple, range, dict)):
        return list(x)
    raise CompileError(f"expected a tuple, list or range, got {_describe(x)}", None)


def _static_call(name, fn, args):
    for a in args:
        if isinstance(a, Value):
            raise CompileError(f"`{name}()` needs values known at compile time, got {_describe(a)}", None,
                               "Use shapes (x.shape[0]), constants or non-array arguments.")
    return fn(*args)


def _fold(xs, op, static):
    if len(xs) == 1:
        xs = tuple(_seq(xs[0]))
    if not _has_value(*xs):
        return static(xs)
    for x in xs:
        if isinstance(x, Value) and x.ndim:
            raise CompileError("builtin min()/max() of arrays is not supported", None,
                               "Use np.minimum/np.maximum elementwise, or np.min/np.max to reduce.")
    result = xs[0]
    for x in xs[1:]:
        result = op(result, x)
    return result
