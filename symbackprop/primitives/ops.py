"""Building IR from Values and Python numbers: used by the frontend and by every adjoint rule.

Each function checks its arguments (shapes, static parameters) and appends one
primitive; none of them computes numbers.
"""
from __future__ import annotations

import itertools

import numbers as _numbers

import numpy as np

from ..errors import CompileError, ShapeError
from ..ir import Value, current_loc, append
from . import scalar
from .index import Index, normalize_index, set_index  # noqa: F401 (set_index: y[i] = v)
from .linalg import MatMul, Outer
from .reduce import REDUCTIONS
from .shape import BroadcastTo, Concatenate, Copy, Reshape, StopGradient, SumTo, Transpose
from .elementwise import Kernel, arg, fill, fill_value, is_bool_expr, kernel, kernel_dtype, number, operand_dtypes

Static = (_numbers.Number, np.number, np.bool_)


def is_value(x) -> bool:
    return isinstance(x, Value)


def is_static_number(x) -> bool:
    return isinstance(x, Static) and not isinstance(x, Value)


def _describe(x):
    if is_value(x):
        return f"{x.dtype}{list(x.shape)}"
    return type(x).__name__


def broadcast_shapes(*shapes, what="operands"):
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        listed = " and ".join(str(tuple(s)) for s in shapes)
        raise ShapeError(f"shapes {listed} of the {what} do not broadcast", current_loc()) from None


def _check_operand(x, what):
    if is_value(x) or is_static_number(x):
        return
    raise CompileError(
        f"{what} expects arrays or numbers, got {type(x).__name__} ({x!r:.60})",
        current_loc(),
    )


def elementwise(fn, *args, what="operation"):
    """Apply a SymPy scalar function to arrays and numbers, NumPy-broadcast."""
    for a in args:
        _check_operand(a, what)
    values = [a for a in args if is_value(a)]
    shape = broadcast_shapes(*(v.shape for v in values), what=what)
    index = {}
    syms = []
    for a in args:
        if is_value(a):
            index.setdefault(a, len(index))
            syms.append(arg(index[a]))
        else:
            syms.append(number(a))
    expr = fn(*syms)
    strong = [np.asarray(a).dtype for a in args if isinstance(a, np.generic) and not isinstance(a, np.bool_)]
    if strong and not is_bool_expr(expr):
        # a NumPy scalar (np.exp(0.5), np.float64(2)) is not weak: float32 arrays meeting it widen (NEP 50)
        natural = kernel_dtype(expr, operand_dtypes(list(index)))
        wanted = np.result_type(natural, *strong)
        weak = all(v.weak for v in index)
        if wanted != natural or weak:
            out = kernel(list(index), (expr,), shape, dtype=wanted)[0]
            out.weak = False
            return out
    if any(type(a) is float for a in args) and not is_bool_expr(expr) \
            and kernel_dtype(expr, operand_dtypes(list(index))).kind in "iub":
        # `number` made an integral float an integer: a Python float among booleans and integers is float64
        return kernel(list(index), (expr,), shape, dtype=np.float64)[0]
    return kernel(list(index), (expr,), shape)[0]


def _static(op, a, b):
    return not is_value(a) and not is_value(b)


def _absorbed(a, b, sign):
    """a + sign*b written by b's primitive when it knows a cheaper form (a scatter added into a: gather.py)."""
    node = b.node if is_value(b) else None
    if node is not None and hasattr(node.prim, "added"):
        return node.prim.added(node, a, sign)
    return None


def add(a, b):
    if _static(None, a, b):
        return a + b
    out = _absorbed(a, b, 1)
    if out is None:
        out = _absorbed(b, a, 1)
    return out if out is not None else elementwise(lambda x, y: x + y, a, b, what="`+`")


def sub(a, b):
    if _static(None, a, b):
        return a - b
    out = _absorbed(a, b, -1)
    if out is None and is_value(a) and a.node is not None and hasattr(a.node.prim, "added"):
        out = _absorbed(neg(b), a, 1)
    return out if out is not None else elementwise(lambda x, y: x - y, a, b, what="`-`")


def mul(a, b):
    return a * b if _static(None, a, b) else elementwise(lambda x, y: x * y, a, b, what="`*`")


def div(a, b):
    if _static(None, a, b):
        return np.float64(a) / np.float64(b) if b == 0 else a / b
    if not is_value(b) and b == 0:
        # x/0.0 is x*inf in IEEE arithmetic (nan at x == 0, the sign of the zero kept); SymPy would fold
        # x/0 to zoo*x, an infinity without a sign
        inf = np.copysign(np.inf, float(b))
        scale = inf if type(b) in (int, float, bool) else np.result_type(b, np.float16).type(inf)
        return elementwise(lambda x, y: x * y, a, scale, what="`/`")
    return elementwise(lambda x, y: x / y, a, b, what="`/`")


def power(a, b):
    if _static(None, a, b):
        real = all(isinstance(v, (_numbers.Real, np.number)) for v in (a, b))
        if real and ((a == 0 and b < 0) or (a < 0 and not float(b).is_integer())):
            # Python raises ZeroDivisionError or makes a complex number; NumPy gives inf or nan
            with np.errstate(all="ignore"):
                return np.float64(a) ** np.float64(b)
        return a**b
    return elementwise(lambda x, y: x**y, a, b, what="`**`")


def neg(a):
    return -a if not is_value(a) else elementwise(lambda x: -x, a, what="unary `-`")


def absolute(a):
    return abs(a) if not is_value(a) else elementwise(scalar.absolute, a, what="abs")


_PY_COMPARE = {
    "lt": lambda a, b: a < b, "le": lambda a, b: a <= b, "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b, "eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
}


def compare(op, a, b):
    if _static(None, a, b):
        return _PY_COMPARE[op](a, b)
    return elementwise(scalar.COMPARISONS[op], a, b, what="comparison")


def logical(op, a, b):
    fn = scalar.logical_and if op == "and" else scalar.logical_or
    for x in (a, b):
        if is_value(x) and x.dtype.kind != "b":
            raise CompileError(
                f"`{'&' if op == 'and' else '|'}` needs boolean arrays (comparisons), got {_describe(x)}",
                current_loc(), "Combine comparisons: (x > 0) & (x < 1).")
    return elementwise(fn, a, b, what="logical operation")


def logical_not(a, what="`~`"):
    if is_value(a) and a.dtype.kind != "b":
        raise CompileError(f"{what} needs a boolean array (a comparison)", current_loc())
    if what == "`~`" and is_value(a) and a.weak:
        raise CompileError("`~` on a comparison of Python floats is not supported: in plain Python it is a "
                           "bitwise not of a bool (~True == -2)", current_loc(),
                           "Use np.logical_not(condition), or flip the comparison.")
    return elementwise(scalar.logical_not, a, what="`~`")


def where(c, a, b):
    if not is_value(c):
        return a if c else b
    if c.dtype.kind != "b":
        c = compare("ne", c, 0)
    return elementwise(scalar.where, c, a, b, what="np.where")


def maximum(a, b):
    if _static(None, a, b):
        return max(a, b)
    return elementwise(scalar.maximum, a, b, what="np.maximum")


def minimum(a, b):
    if _static(None, a, b):
        return min(a, b)
    return elementwise(scalar.minimum, a, b, what="np.minimum")


def clip(x, lo, hi):
    if lo is None and hi is None:
        raise CompileError("np.clip needs a lower or an upper bound", current_loc())
    if lo is None:
        return minimum(x, hi)
    if hi is None:
        return maximum(x, lo)
    return elementwise(lambda v, l, h: scalar.minimum(scalar.maximum(v, l), h), x, lo, hi, what="np.clip")


def unary(name, x):
    """np.<name> of x, by a name in the table of scalar functions."""
    return elementwise(scalar.NUMPY_NAMES[name].build, x, what=f"np.{name}")


# ---- structural operations -----------------------------------------------------

def as_value(x, like=None):
    """A Python number as a 0-d constant Value."""
    if is_value(x):
        return x
    dtype = like.dtype if like is not None and like.dtype.kind == "f" else np.float64
    return fill(float(x), (), dtype)


def normalize_axes(axis, ndim, what="axis"):
    """None -> all axes; ints -> a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    out = []
    for a in axes:
        if not isinstance(a, (int, np.integer)) or isinstance(a, bool):
            raise CompileError(f"{what} must be a whole number known at compile time, got {a!r}", current_loc())
        if not -ndim <= a < ndim:
            raise ShapeError(f"{what} {a} is out of bounds for an array of {ndim} dimensions", current_loc())
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ShapeError(f"repeated {what} in {axis!r}", current_loc())
    return tuple(sorted(out))


def reduce(kind, x, axis=None, keepdims=False):
    x = as_value(x)
    axes = normalize_axes(axis, x.ndim)
    if not axes:
        return x
    return append(REDUCTIONS[kind], [x], {"axes": axes, "keepdims": bool(keepdims)})


def sum(x, axis=None, keepdims=False):
    node = x.node if is_value(x) else None
    if node is not None and hasattr(node.prim, "summed"):  # a sum its producer writes without itself
        out = node.prim.summed(node, normalize_axes(axis, x.ndim), keepdims)
        if out is not None:
            return out
    return reduce("sum", x, axis, keepdims)


def mean(x, axis=None, keepdims=False):
    x = as_value(x)
    axes = normalize_axes(axis, x.ndim)
    count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    return div(sum(x, axes, keepdims), count) if count else div(sum(x, axes, keepdims), 0.0)


def amax(x, axis=None, keepdims=False):
    return reduce("max", x, axis, keepdims)


def amin(x, axis=None, keepdims=False):
    return reduce("min", x, axis, keepdims)


def reshape(x, shape):
    x = as_value(x)
    shape = tuple(int(s) for s in shape)
    if -1 in shape:
        known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
        if shape.count(-1) > 1 or known == 0 or x.size % known:
            raise ShapeError(f"cannot reshape {x.shape} into {shape}", current_loc())
        shape = tuple(x.size // known if s == -1 else s for s in shape)
    if int(np.prod(shape, dtype=np.int64)) != x.size:
        raise ShapeError(f"cannot reshape an array of shape {x.shape} into shape {shape}", current_loc())
    if shape == x.shape:
        return x
    c = fill_value(x)
    if c is not None:
        return fill(c, shape, x.dtype)
    return append(Reshape, [x], {"shape": shape})


def expand_to_keepdims(g, axes, ndim):
    """Reinsert the reduced axes (as size 1) into a reduction's result.

    Leading axes are left out: NumPy's broadcasting puts them back (`x*d_s`, not
    `x*np.reshape(d_s, (1,))`)."""
    axes = sorted(axes)
    lead = 0
    while lead < len(axes) and axes[lead] == lead:
        lead += 1
    if lead == len(axes):
        return g
    shape = list(g.shape)
    for a in sorted(axes):
        shape.insert(a, 1)
    return reshape(g, shape) if len(shape) != g.ndim else g


def transpose(x, axes=None):
    x = as_value(x)
    if x.ndim < 2 and axes is None:
        return x
    perm = tuple(reversed(range(x.ndim))) if axes is None else tuple(normalize_axes_ordered(axes, x.ndim))
    if sorted(perm) != list(range(x.ndim)) or len(perm) != x.ndim:
        raise ShapeError(f"axes {axes!r} are not a permutation of {x.ndim} dimensions", current_loc())
    if perm == tuple(range(x.ndim)):
        return x
    return append(Transpose, [x], {"perm": perm})


def normalize_axes_ordered(axes, ndim):
    return [int(a) % ndim for a in axes]


def swap_last(x):
    perm = list(range(x.ndim))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return transpose(x, perm)


def broadcast_to(x, shape):
    x = as_value(x)
    shape = tuple(shape)
    if x.shape == shape:
        return x
    broadcast_shapes(x.shape, shape)
    c = fill_value(x)
    if c is not None:
        return fill(c, shape, x.dtype)
    return append(BroadcastTo, [x], {"shape": shape})


def sum_to(x, shape):
    """Sum `x` down to `shape` (the adjoint of NumPy broadcasting)."""
    shape = tuple(shape)
    if x.shape == shape:
        return x
    lead = x.ndim - len(shape)
    axes = set(range(lead)) | {lead + i for i, s in enumerate(shape) if s == 1 and x.shape[lead + i] != 1}
    if axes and axes <= x.zero_sum_axes:
        return None
    c = fill_value(x)
    if c is not None:
        count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
        return fill(c * count, shape, x.dtype)
    return append(SumTo, [x], {"shape": shape})


def matmul(a, b):
    for v in (a, b):
        if not is_value(v):
            raise CompileError("`@` needs arrays on both sides", current_loc(), "Use `*` to scale by a number.")
        if v.ndim == 0:
            raise ShapeError("`@` does not take 0-d arrays", current_loc())
    MatMul.result_shape(a.shape, b.shape)
    return append(MatMul, [a, b], {})


def dot(a, b):
    if not is_value(a) or not is_value(b) or a.ndim == 0 or b.ndim == 0:
        return mul(a, b)
    if a.ndim > 2 or b.ndim > 2:
        raise CompileError("np.dot of arrays with more than 2 dimensions is not supported", current_loc(),
                           "Use a @ b (np.matmul), which broadcasts over the leading dimensions.")
    return matmul(a, b)


def outer(a, b):
    a, b = as_value(a), as_value(b)
    return append(Outer, [a, b], {})


def index(x, idx):
    x = as_value(x)
    key, shape = normalize_index(idx, x.shape)
    if key == tuple(slice(None) for _ in x.shape):
        return x
    name = None
    ints = [k for k in key if isinstance(k, int)]
    if x.name and ints and all(isinstance(k, int) or k == slice(None) for k in key):
        name = "_".join([x.name] + [str(k) for k in ints])  # Ws[2] is Ws_2, its gradient d_Ws_2
    return append(Index, [x], {"index": key, "shape": shape}, name=name)


def concatenate(xs, axis=0):
    xs = [as_value(x) for x in xs]
    if not xs:
        raise CompileError("np.concatenate needs at least one array", current_loc())
    if any(x.ndim == 0 for x in xs):
        raise ShapeError("np.concatenate cannot join 0-d arrays; use np.stack", current_loc())
    (axis,) = normalize_axes(axis, xs[0].ndim)
    Concatenate.result_shape([x.shape for x in xs], axis)
    if len(xs) == 1:
        return xs[0]
    return append(Concatenate, xs, {"axis": axis})


def stack(xs, axis=0):
    xs = [as_value(x) for x in xs]
    if not xs:
        raise CompileError("np.stack needs at least one array", current_loc())
    shape = xs[0].shape
    if any(x.shape != shape for x in xs):
        raise ShapeError(f"np.stack needs arrays of one shape, got {[x.shape for x in xs]}", current_loc())
    (axis,) = normalize_axes(axis, len(shape) + 1)
    expanded = [reshape(x, shape[:axis] + (1,) + shape[axis:]) for x in xs]
    return concatenate(expanded, axis) if len(xs) > 1 else expanded[0]


def numpy_scalar(x):
    """NumPy's function of a Python float (np.tanh(s), s a float argument) gives a float64 NumPy scalar, which
    widens the float32 arrays it meets (NEP 50) where the Python float adapts: x, weak, as that scalar (a
    node of its own, so that math.tanh(s), the same kernel, stays weak)."""
    if not (is_value(x) and x.weak):
        return x
    out = append(Kernel, [x], {"outs": (arg(0),), "program": (), "names": (), "shape": x.shape, "dtype": x.dtype})
    out.weak = False
    return out


def astype(x, dtype):
    """x converted to `dtype` (x.astype(dtype)): an elementwise identity kernel of that dtype."""
    dtype = np.dtype(dtype)
    if x.dtype == dtype:
        return x
    out = kernel([x], (arg(0),), x.shape, dtype=dtype)[0]
    out.weak = False
    return out


def zeros_like(x):
    return fill(0.0, x.shape, x.dtype)


_copies = itertools.count()


def copy(x):
    """np.copy(x) in a model: a Value of its own, so that assigning into it shares nothing (frontend/assignment);
    the IR is functional, so passes/dce drops it after reverse mode and no backend copies anything. Each
    copy is its own node (two copies of x are two arrays in NumPy, not one)."""
    x = as_value(x)
    out = append(Copy, [x], {"traced": True, "copy": next(_copies)})
    out.weak = x.weak
    return out


def stop_gradient(x):
    """sb.stop_gradient(x): inside a model, x's value with derivative zero (`x + sb.stop_gradient(np.rint(x) - x)`
    rounds forward and passes the gradient straight through); on a NumPy value outside a model, x itself."""
    if not is_value(x):
        return x
    out = append(StopGradient, [x])
    out.weak = x.weak
    return out


# ---- forward mode: tangents carrying a leading batch of directions -------------------------

def lift(t, batch, ndim):
    """Tangent `t` (shape batch + its value's shape) with 1s inserted behind the batch axes up to
    `ndim` axes of its own: it then broadcasts against values of `ndim` axes as its value does."""
    nb = len(batch)
    own = t.ndim - nb
    if own >= ndim or nb == 0:  # without batch axes, broadcasting inserts the 1s in front itself
        return t
    return reshape(t, t.shape[:nb] + (1,) * (ndim - own) + t.shape[nb:])


def zero_tangent(v, batch):
    """The zero tangent of `v` (an explicit array, where a rule needs one)."""
    return fill(0.0, tuple(batch) + v.shape, v.dtype if v.dtype.kind == "f" else np.float64)


def shifted(axes, batch):
    """Axes of a value as axes of its tangent (behind the batch axes)."""
    return tuple(a + len(batch) for a in axes)


def add_tangents(parts):
    """The sum of the tangents that are not None (None when all are)."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    total = parts[0]
    for p in parts[1:]:
        total = add(total, p)
    return total


# ---- batching (sb.vmap): values carrying a leading batch axis of size n -------------------------

def batched(v, is_batched, n):
    """`v` with the leading batch axis: itself when it has one, else broadcast along it (a view)."""
    return v if is_batched else broadcast_to(v, (n,) + v.shape)


def as_list(made):
    """`append`'s result (one Value or a tuple) as a list of outputs."""
    return list(made) if isinstance(made, tuple) else [made]
