"""How the NumPy backend writes each primitive: one rule per primitive class.

RULES maps a primitive's class to `rule(node, args, out)`, where `args` are the
written inputs (names, or inline text such as `W.T`) and `out` the names of the
outputs (None when the statement is written inline, or for a kernel, which names
its outputs as it computes them). A rule returns an expression, which the writer
assigns to the single output, or a list of statements.

INTO maps the classes whose result can be written straight into a target (a
slice of an accumulated gradient, `d_Ws[2]`) to `into(node, args, target)`,
returning the expression that does it with `out=`.

Primitives are registered as their instances (`MatMul` is the instance), so the
tables are keyed by `type(prim)`; `rule(MatMul)` registers under that class.
"""
from __future__ import annotations

from ...dtypes import text as dtype_text
from ...primitives.composite import LogSoftmax, LogSumExp, Softmax
from ...primitives.control import If, Replay, While
from ...primitives.elementwise import Constant, Fill, Kernel
from ...primitives.gather import AddAt, Argsort, Gather, ScatterAddAt, key_text
from ...primitives.index import Index, ScatterAdd, SetIndex, index_text
from ...primitives.linalg import Cholesky, Det, Eigh, Inv, MatMul, Outer, Pinv, Slogdet, Solve
from ...primitives.reduce import Max, Min, Sum, axis_text
from ...primitives.shape import BroadcastTo, Concatenate, Copy, Reshape, SumTo, Transpose
from .context import current_writer
from .printer import float_literal, kernel_lines
from .regions import write_region

RULES: dict = {}
INTO: dict = {}


def rule(*prims, table=RULES):
    """Register the decorated function as the rule of each of `prims` (primitive instances)."""

    def register(fn):
        for prim in prims:
            table[type(prim)] = fn
        return fn

    return register


def write(node, args, out):
    """The rule of node's primitive applied: an expression or a list of statements."""
    fn = RULES.get(type(node.prim))
    if fn is None:
        raise NotImplementedError(node.prim.name)
    return fn(node, args, out)


def writes_into(node) -> bool:
    """Whether node's primitive has an `out=` form (see INTO)."""
    return type(node.prim) in INTO


def write_into(node, args, target):
    return INTO[type(node.prim)](node, args, target)


def reduction_call(method, x, axes, ndim, keepdims, out=None):
    parts = [p for p in (axis_text(axes, ndim), "keepdims=True" if keepdims else "", f"out={out}" if out else "")
             if p]
    return f"{x}.{method}({', '.join(parts)})"


# ---- elementwise ------------------------------------------------------------------

@rule(Kernel)
def _kernel(node, args, out):
    return kernel_lines(node, args, out)


@rule(Fill)
def _fill(node, args, out):
    value, shape = node.attrs["value"], node.attrs["shape"]
    if shape == ():
        return float_literal(value)
    return f"np.full({shape!r}, {float_literal(value)}, dtype={dtype_text(node.attrs['dtype'])})"


@rule(Constant)
def _constant(node, args, out):
    return node.attrs["text"]


# ---- reductions ---------------------------------------------------------------------

@rule(Sum, Max, Min)
def _reduction(node, args, out):
    x = node.inputs[0]
    return reduction_call(node.prim.method, args[0], node.attrs["axes"], x.ndim, node.attrs["keepdims"])


@rule(Sum, Max, Min, table=INTO)
def _reduction_into(node, args, target):
    x = node.inputs[0]
    return reduction_call(node.prim.method, args[0], node.attrs["axes"], x.ndim, node.attrs["keepdims"], target)


# ---- indexing ---------------------------------------------------------------------------

@rule(Index)
def _index(node, args, out):
    return f"{args[0]}[{index_text(node.attrs['index'])}]"


def scatter_allocation(node, name, empty=False):
    """The statement allocating a scatter-add's result (empty when its parts cover it)."""
    shape, dtype = node.attrs["shape"], node.attrs["dtype"]
    return f"{name} = np.{'empty' if empty else 'zeros'}({shape!r}, dtype={dtype_text(dtype)})"


def scatter_target(node, name, k):
    """Where the k-th part of scatter-add `node` (its result named `name`) goes."""
    return f"{name}[{index_text(node.attrs['indexes'][k])}]"


@rule(ScatterAdd)
def _scatter_add(node, args, out):
    (name,) = out
    writer = current_writer()
    written = writer.scattered.get(node, ()) if writer is not None else ()
    lines = [] if written else [scatter_allocation(node, name)]
    for k, (key, a) in enumerate(zip(node.attrs["indexes"], args)):
        if k not in written:
            lines.append(f"{name}[{index_text(key)}] += {a}")
    return lines


@rule(Gather)
def _gather(node, args, out):
    return f"{args[0]}[{key_text(node.attrs['key'], args[1:])}]"


def add_at_text(name, key, g, idx):
    """`np.add.at(name, <key>, g)`: entries at repeated indices add up (a `+=` through an index would not)."""
    text = key_text(key, idx)
    if any(isinstance(k, slice) for k in key):
        where = f"np.s_[{text}]"
    else:
        where = f"({text})" if len(key) > 1 else text
    return f"np.add.at({name}, {where}, {g})"


@rule(ScatterAddAt)
def _scatter_add_at(node, args, out):
    """Zeros, then np.add.at."""
    (name,) = out
    dtype = node.outputs[0].dtype
    return [f"{name} = np.zeros({node.attrs['shape']!r}, dtype={dtype_text(dtype)})",
            add_at_text(name, node.attrs["key"], args[0], args[1:])]


@rule(AddAt)
def _add_at(node, args, out):
    """A copy of the base, then np.add.at (the writer adds into the base itself when nothing reads it after)."""
    (name,) = out
    return [f"{name} = {args[0]}.copy()", add_at_text(name, node.attrs["key"], args[1], args[2:])]


@rule(Solve, Inv, Det, Cholesky, Pinv)
def _linalg(node, args, out):
    return f"np.linalg.{node.prim.name}({', '.join(args)})"


@rule(Slogdet, Eigh)
def _linalg_pair(node, args, out):
    return [f"{out[0]}, {out[1]} = np.linalg.{node.prim.name}({args[0]})"]


@rule(Argsort)
def _argsort(node, args, out):
    return f"np.argsort({args[0]}, axis={node.attrs['axis']}, kind='stable')"


@rule(SetIndex)
def _set_index(node, args, out):
    """A new version of the array: copied, then written (the old version stays what it was)."""
    (name,) = out
    return [f"{name} = {args[0]}.copy()", f"{name}[{index_text(node.attrs['index'])}] = {args[1]}"]


# ---- shapes ---------------------------------------------------------------------------------

def _inserted_axes(old, new):
    """The index (slices and None) that turns shape `old` into `new`, if one does."""
    if len(new) <= len(old):
        return None
    key, j = [], 0
    for s in new:
        if j < len(old) and s == old[j]:
            key.append(slice(None))
            j += 1
        elif s == 1:
            key.append(None)
        else:
            return None
    return tuple(key) if j == len(old) else None


@rule(Reshape)
def _reshape(node, args, out):
    key = _inserted_axes(node.inputs[0].shape, node.attrs["shape"])
    if node.inputs[0].shape == ():  # a 0-d value may be a Python float, which has no [None]
        return f"np.reshape({args[0]}, {node.attrs['shape']!r})"
    if key is not None:  # x[:, None] reads better than a reshape that only adds axes
        return f"{args[0]}[{index_text(key)}]"
    shape = node.attrs["shape"]
    return f"{args[0]}.reshape({', '.join(map(str, shape)) if shape else '()'})"


@rule(Transpose)
def _transpose(node, args, out):
    perm = node.attrs["perm"]
    if perm == tuple(reversed(range(len(perm)))):
        return f"{args[0]}.T"
    return f"{args[0]}.transpose({', '.join(map(str, perm))})"


@rule(BroadcastTo)
def _broadcast_to(node, args, out):
    return f"np.broadcast_to({args[0]}, {node.attrs['shape']!r})"


@rule(SumTo)
def _sum_to(node, args, out):
    x, shape = node.inputs[0], node.attrs["shape"]
    lead = x.ndim - len(shape)
    text = args[0]
    if lead:
        text = reduction_call("sum", text, tuple(range(lead)), x.ndim, False)
    stretched = tuple(i for i, s in enumerate(shape) if s == 1 and x.shape[lead + i] != 1)
    if stretched:
        text = reduction_call("sum", text, stretched, len(shape), True)
    return text


@rule(SumTo, table=INTO)
def _sum_to_into(node, args, target):
    """Only a sum over leading axes (bias gradients) writes into its target in one call."""
    x, shape = node.inputs[0], node.attrs["shape"]
    lead = x.ndim - len(shape)
    return reduction_call("sum", args[0], tuple(range(lead)), x.ndim, False, target)


@rule(Concatenate)
def _concatenate(node, args, out):
    axis = node.attrs["axis"]
    return f"np.concatenate([{', '.join(args)}], axis={axis})"


@rule(Copy)
def _copy(node, args, out):
    return f"np.copy({args[0]})"


# ---- linear algebra ------------------------------------------------------------------------

@rule(MatMul)
def _matmul(node, args, out):
    a, b = node.inputs
    if a.ndim <= 2 and b.ndim <= 2:
        # the same product as `@` (same BLAS call) without the matmul ufunc's dispatch: ~0.4 µs less a call
        return f"np.dot({args[0]}, {args[1]})"
    return f"{args[0]} @ {args[1]}"


@rule(MatMul, table=INTO)
def _matmul_into(node, args, target):
    """The product written straight into `target` (a slice of an accumulated gradient)."""
    return f"np.matmul({args[0]}, {args[1]}, out={target})"


@rule(Outer)
def _outer(node, args, out):
    return f"np.outer({args[0]}, {args[1]})"


# ---- value-dependent control flow ----------------------------------------------------------

@rule(If, While, Replay)
def _region(node, args, out):
    """A compound statement (regions.py); the writer calls it before naming the outputs, as here."""
    return write_region(node, args)


# ---- softmax family ---------------------------------------------------------------------------

def _exp_sum(node, args, e, s):
    z = node.inputs[0]
    return [f"{e} = np.exp({args[0]})",
            f"{s} = {reduction_call('sum', e, node.attrs['axes'], z.ndim, True)}"]


@rule(LogSumExp)
def _logsumexp(node, args, out):
    lse, e, s = out
    lines = _exp_sum(node, args, e, s)
    log = f"np.log({s})"
    if not node.attrs["keepdims"]:
        shape = node.outputs[0].shape
        log = f"{log}.reshape({', '.join(map(str, shape)) if shape else '()'})"
    return lines + [f"{lse} = {log}"]


@rule(LogSoftmax)
def _log_softmax(node, args, out):
    logp, e, s = out
    return _exp_sum(node, args, e, s) + [f"{logp} = {args[0]} - np.log({s})"]


@rule(Softmax)
def _softmax(node, args, out):
    p, e, s = out
    return _exp_sum(node, args, e, s) + [f"{p} = {e} / {s}"]
