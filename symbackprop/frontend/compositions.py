"""NumPy functions the language writes in terms of its primitives.

Each is what NumPy computes, built from reshapes, slices, products and
reductions, so its derivative is the primitives' own (no rule of its own to get
wrong) and both backends run it unchanged. Only static arguments steer them:
axes, counts, subscripts and shifts must be known at specialisation.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import CompileError, ShapeError
from ..ir import Value, current_loc
from ..primitives import ops
from ..primitives import linalg
from ..primitives.elementwise import Constant, constant

_LN2 = math.log(2.0)
_LN10 = math.log(10.0)


def _array(x):
    return ops.as_value(x)


def _static_int(x, what):
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return int(x)
    raise CompileError(f"{what} must be an int known at specialisation, got {type(x).__name__}", current_loc(),
                       "Use a number, a shape (x.shape[0]) or an int parameter that steers the program.")


def _axis(axis, ndim):
    (a,) = ops.normalize_axes(_static_int(axis, "axis"), ndim)
    return a


def _along(x, axis, part):
    """x[..., part, ...] with `part` (a slice or an int) at `axis`."""
    return ops.index(x, (slice(None),) * axis + (part,))


# ---- statistics ---------------------------------------------------------------------------------

def var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
    _no_dtype_out(dtype, out, "np.var")
    a = _array(a)
    axes = ops.normalize_axes(axis, a.ndim)
    count = int(np.prod([a.shape[i] for i in axes], dtype=np.int64))
    d = ops.sub(a, ops.mean(a, axes, keepdims=True))
    return ops.div(ops.sum(ops.mul(d, d), axes, keepdims), float(count - ddof) if count > ddof else 0.0)


def std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
    return ops.unary("sqrt", var(a, axis, dtype, out, ddof, keepdims))


def prod(a, axis=None, dtype=None, out=None, keepdims=False):
    """The running product of the slices along the axis (right where an entry is zero)."""
    _no_dtype_out(dtype, out, "np.prod")
    a = _array(a)
    if axis is None:
        result = _product_along(ops.reshape(a, (a.size,)), 0)
        return ops.reshape(result, (1,) * a.ndim) if keepdims else result
    axes = ops.normalize_axes(axis, a.ndim)
    result = a
    for ax in sorted(axes, reverse=True):
        result = _product_along(result, ax)
    return ops.expand_to_keepdims(result, axes, a.ndim) if keepdims else result


def _product_along(a, axis):
    if a.shape[axis] == 0:
        return ops.fill(1.0, a.shape[:axis] + a.shape[axis + 1:], a.dtype)
    result = _along(a, axis, 0)
    for i in range(1, a.shape[axis]):
        result = ops.mul(result, _along(a, axis, i))
    return result


def cumsum(a, axis=None, dtype=None, out=None):
    """Partial sums along the axis, concatenated (one add per entry along it)."""
    _no_dtype_out(dtype, out, "np.cumsum")
    a = _array(a)
    if axis is None:
        a, axis = ops.reshape(a, (a.size,)), 0
    axis = _axis(axis, a.ndim)
    parts, total = [], None
    for i in range(a.shape[axis]):
        piece = _along(a, axis, slice(i, i + 1))
        total = piece if total is None else ops.add(total, piece)
        parts.append(total)
    return ops.concatenate(parts, axis) if parts else a


def cumprod(a, axis=None, dtype=None, out=None):
    """Partial products along the axis, concatenated (one product per entry: right where entries are 0)."""
    _no_dtype_out(dtype, out, "np.cumprod")
    a = _array(a)
    if axis is None:
        a, axis = ops.reshape(a, (a.size,)), 0
    axis = _axis(axis, a.ndim)
    parts, total = [], None
    for i in range(a.shape[axis]):
        piece = _along(a, axis, slice(i, i + 1))
        total = piece if total is None else ops.mul(total, piece)
        parts.append(total)
    return ops.concatenate(parts, axis) if parts else a


def diff(a, n=1, axis=-1):
    a = _array(a)
    axis = _axis(axis, a.ndim)
    for _ in range(_static_int(n, "np.diff's n")):
        a = ops.sub(_along(a, axis, slice(1, None)), _along(a, axis, slice(None, -1)))
    return a


def _no_dtype_out(dtype, out, what):
    if dtype is not None or out is not None:
        raise CompileError(f"`{what}(..., dtype=/out=)` is not supported", current_loc(),
                           "Remove them: arrays keep their dtypes and results are new arrays.")


# ---- norms and elementwise functions written with others ----------------------------------------------

def norm(x, ord=None, axis=None, keepdims=False):
    """np.linalg.norm: the 2-norm of a vector, Frobenius of a matrix, and the 1- and inf-norms of vectors."""
    x = _array(x)
    axes = ops.normalize_axes(axis, x.ndim)
    vector = len(axes) == 1
    if ord is None or (ord == "fro" and not vector) or (ord == 2 and vector):
        return ops.unary("sqrt", ops.sum(ops.mul(x, x), axes, keepdims))
    if vector and ord == 1:
        return ops.sum(ops.absolute(x), axes, keepdims)
    if vector and ord == math.inf:
        return ops.amax(ops.absolute(x), axes, keepdims)
    raise CompileError(f"np.linalg.norm(..., ord={ord!r}) of {'a vector' if vector else 'a matrix'} is not "
                       "supported", current_loc(),
                       "Vectors take ord=None, 2, 1 or np.inf; matrices the Frobenius norm (ord=None or 'fro').")


def logaddexp(x1, x2, /):
    """log(exp(a) + exp(b)) without overflow: max(a, b) + log1p(exp(-|a - b|))."""
    if not isinstance(x1, Value) and not isinstance(x2, Value):
        return np.logaddexp(x1, x2)
    return ops.add(ops.maximum(x1, x2), ops.unary("log1p", ops.unary("exp", ops.neg(ops.absolute(ops.sub(x1, x2))))))


def logaddexp2(x1, x2, /):
    if not isinstance(x1, Value) and not isinstance(x2, Value):
        return np.logaddexp2(x1, x2)
    return ops.div(logaddexp(ops.mul(x1, _LN2), ops.mul(x2, _LN2)), _LN2)


def hypot(x1, x2, /):
    if not isinstance(x1, Value) and not isinstance(x2, Value):
        return np.hypot(x1, x2)
    return ops.unary("sqrt", ops.add(ops.mul(x1, x1), ops.mul(x2, x2)))


def remainder(x1, x2, /):
    """x1 - floor(x1/x2)*x2, the sign of x2 as Python's %: derivative 1 in x1, -floor(x1/x2) in x2."""
    if not isinstance(x1, Value) and not isinstance(x2, Value):
        with np.errstate(all="ignore"):
            return np.remainder(x1, x2)
    return ops.sub(x1, ops.mul(ops.unary("floor", ops.div(x1, x2)), x2))


def fmod(x1, x2, /):
    """x1 - trunc(x1/x2)*x2, the sign of x1 as C's fmod: derivative 1 in x1, -trunc(x1/x2) in x2."""
    if not isinstance(x1, Value) and not isinstance(x2, Value):
        with np.errstate(all="ignore"):
            return np.fmod(x1, x2)
    q = ops.div(x1, x2)
    truncated = ops.where(ops.compare("lt", q, 0.0), ops.unary("ceil", q), ops.unary("floor", q))
    return ops.sub(x1, ops.mul(truncated, x2))


def heaviside(x1, x2, /):
    """0 below zero, x2 at zero, 1 above: piecewise constant in x1 (derivative 0), x2's where x1 == 0."""
    if not isinstance(x1, Value) and not isinstance(x2, Value):
        return np.heaviside(x1, x2)
    return ops.where(ops.compare("gt", x1, 0.0), 1.0, ops.where(ops.compare("eq", x1, 0.0), x2, 0.0))


def deg2rad(x, /):
    return ops.mul(x, math.pi / 180) if isinstance(x, Value) else np.deg2rad(x)


def rad2deg(x, /):
    return ops.mul(x, 180 / math.pi) if isinstance(x, Value) else np.rad2deg(x)


def _scaled_log(name, scale):
    def fn(x, /):
        if not isinstance(x, Value):
            with np.errstate(all="ignore"):
                return getattr(np, name)(x)
        return ops.div(ops.unary("log", x), scale)
    fn.__name__ = name
    return fn


def exp2(x, /):
    if not isinstance(x, Value):
        return np.exp2(x)
    return ops.unary("exp", ops.mul(x, _LN2))


# ---- axes ---------------------------------------------------------------------------------------

def squeeze(a, axis=None):
    a = _array(a)
    axes = tuple(i for i, s in enumerate(a.shape) if s == 1) if axis is None else ops.normalize_axes(axis, a.ndim)
    for i in axes:
        if a.shape[i] != 1:
            raise ShapeError(f"np.squeeze: axis {i} of shape {a.shape} has size {a.shape[i]}, not 1", current_loc())
    return ops.reshape(a, tuple(s for i, s in enumerate(a.shape) if i not in axes))


def swapaxes(a, axis1, axis2):
    a = _array(a)
    perm = list(range(a.ndim))
    i, j = _axis(axis1, a.ndim), _axis(axis2, a.ndim)
    perm[i], perm[j] = perm[j], perm[i]
    return ops.transpose(a, perm)


def moveaxis(a, source, destination):
    a = _array(a)
    source = [_axis(s, a.ndim) for s in (source if isinstance(source, (tuple, list)) else (source,))]
    destination = [_axis(d, a.ndim) for d in
                   (destination if isinstance(destination, (tuple, list)) else (destination,))]
    if len(source) != len(destination):
        raise ShapeError("np.moveaxis: source and destination need as many axes", current_loc())
    order = [i for i in range(a.ndim) if i not in source]
    for dest, src in sorted(zip(destination, source)):
        order.insert(dest, src)
    return ops.transpose(a, order)


def _atleast(ndim):
    def fn(*arys):
        made = [_at_least(_array(a), ndim) for a in arys]
        return made[0] if len(made) == 1 else made
    fn.__name__ = f"atleast_{ndim}d"
    return fn


def _at_least(a, ndim):
    if a.ndim >= ndim:
        return a
    if ndim == 3 and a.ndim == 2:
        return ops.reshape(a, a.shape + (1,))
    if ndim == 3 and a.ndim == 1:
        return ops.reshape(a, (1,) + a.shape + (1,))
    return ops.reshape(a, (1,) * (ndim - a.ndim) + a.shape)


def broadcast_to(array, shape):
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    return ops.broadcast_to(_array(array), tuple(_static_int(s, "a shape") for s in shape))


def flip(m, axis=None):
    m = _array(m)
    axes = ops.normalize_axes(axis, m.ndim)
    return ops.index(m, tuple(slice(None, None, -1) if i in axes else slice(None) for i in range(m.ndim)))


def roll(a, shift, axis=None):
    a = _array(a)
    if axis is None:
        return ops.reshape(roll(ops.reshape(a, (a.size,)), shift, 0), a.shape)
    shifts = shift if isinstance(shift, (tuple, list)) else (shift,)
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    if len(shifts) != len(axes):
        raise ShapeError("np.roll: shift and axis need as many entries", current_loc())
    for s, ax in zip(shifts, axes):
        ax = _axis(ax, a.ndim)
        n = a.shape[ax]
        k = _static_int(s, "np.roll's shift") % n if n else 0
        if k:
            a = ops.concatenate([_along(a, ax, slice(n - k, None)), _along(a, ax, slice(None, n - k))], ax)
    return a


# ---- building and splitting --------------------------------------------------------------------------

def repeat(a, repeats, axis=None):
    a = _array(a)
    r = _static_int(repeats, "np.repeat's repeats (an int)")
    if axis is None:
        a, axis = ops.reshape(a, (a.size,)), 0
    axis = _axis(axis, a.ndim)
    expanded = ops.reshape(a, a.shape[:axis + 1] + (1,) + a.shape[axis + 1:])
    shape = a.shape[:axis + 1] + (r,) + a.shape[axis + 1:]
    return ops.reshape(ops.broadcast_to(expanded, shape),
                       a.shape[:axis] + (a.shape[axis] * r,) + a.shape[axis + 1:])


def tile(A, reps):
    A = _array(A)
    reps = (reps,) if isinstance(reps, (int, np.integer)) else tuple(reps)
    reps = tuple(_static_int(r, "np.tile's reps") for r in reps)
    ndim = max(A.ndim, len(reps))
    A = ops.reshape(A, (1,) * (ndim - A.ndim) + A.shape)
    reps = (1,) * (ndim - len(reps)) + reps
    interleaved = ops.reshape(A, tuple(x for s in A.shape for x in (1, s)))
    shape = tuple(x for r, s in zip(reps, A.shape) for x in (r, s))
    return ops.reshape(ops.broadcast_to(interleaved, shape), tuple(r * s for r, s in zip(reps, A.shape)))


def split(ary, indices_or_sections, axis=0):
    ary = _array(ary)
    axis = _axis(axis, ary.ndim)
    if isinstance(indices_or_sections, (int, np.integer)):
        n = ary.shape[axis]
        if n % indices_or_sections:
            raise ShapeError(f"np.split: {n} entries along axis {axis} do not split into "
                             f"{indices_or_sections} equal parts", current_loc())
    return array_split(ary, indices_or_sections, axis)


def array_split(ary, indices_or_sections, axis=0):
    ary = _array(ary)
    axis = _axis(axis, ary.ndim)
    n = ary.shape[axis]
    if isinstance(indices_or_sections, (int, np.integer)):
        k = _static_int(indices_or_sections, "the number of sections")
        if k <= 0:
            raise ShapeError("np.array_split: the number of sections must be positive", current_loc())
        size, extra = divmod(n, k)
        bounds = np.cumsum([0] + [size + 1] * extra + [size] * (k - extra)).tolist()
    else:
        bounds = [0] + [_static_int(i, "a split index") for i in indices_or_sections] + [n]
    return [_along(ary, axis, slice(lo, hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]


def pad(array, pad_width, mode="constant", constant_values=0):
    if mode != "constant":
        raise CompileError(f"np.pad(..., mode={mode!r}) is not supported", current_loc(),
                           "Pad with a constant (mode='constant', constant_values=c).")
    if isinstance(constant_values, Value) or not isinstance(constant_values, (int, float, np.number)):
        raise CompileError("np.pad's constant_values must be one number known at specialisation", current_loc())
    a = _array(array)
    widths = np.broadcast_to(np.asarray(pad_width, dtype=object), (a.ndim, 2)).tolist()
    for ax, (before, after) in enumerate(widths):
        before, after = _static_int(before, "a pad width"), _static_int(after, "a pad width")
        parts = []
        for w in (before, after):
            parts.append(ops.fill(constant_values, a.shape[:ax] + (w,) + a.shape[ax + 1:], a.dtype) if w else None)
        pieces = [p for p in (parts[0], a, parts[1]) if p is not None]
        a = ops.concatenate(pieces, ax) if len(pieces) > 1 else a
    return a


# ---- products and contractions ----------------------------------------------------------------

def einsum(subscripts, *operands):
    """One or more operands, explicit or implicit output, no ellipsis; each pair contracted as a (batched)
    matrix product, so a matrix product in the subscripts goes to BLAS."""
    if not isinstance(subscripts, str):
        raise CompileError("np.einsum takes its subscripts as a string first", current_loc(),
                           "Write np.einsum('ij,jk->ik', a, b).")
    spec = subscripts.replace(" ", "")
    if "." in spec:
        raise CompileError("np.einsum with an ellipsis (...) is not supported", current_loc(),
                           "Name every axis: np.einsum('bij,bjk->bik', a, b).")
    inputs, arrow, output = spec.partition("->")
    terms = inputs.split(",")
    if len(terms) != len(operands):
        raise ShapeError(f"np.einsum: {len(terms)} subscripts for {len(operands)} operands", current_loc())
    if not arrow:
        counts = {c: inputs.count(c) for c in inputs if c.isalpha()}
        output = "".join(sorted(c for c, n in counts.items() if n == 1))
    arrays = [_array(x) for x in operands]
    sizes = {}
    for term, x in zip(terms, arrays):
        if len(term) != x.ndim or not term.isalpha():
            raise ShapeError(f"np.einsum: subscripts '{term}' for an array of shape {x.shape}", current_loc())
        if len(set(term)) != len(term):
            raise CompileError(f"np.einsum: a repeated index within one operand ('{term}') is not supported",
                               current_loc(), "For a trace write np.trace(a); for a diagonal, index it.")
        for c, s in zip(term, x.shape):
            if sizes.setdefault(c, s) != s:
                raise ShapeError(f"np.einsum: index '{c}' has sizes {sizes[c]} and {s}", current_loc())
    if len(set(output)) != len(output) or any(c not in sizes for c in output):
        raise ShapeError(f"np.einsum: output subscripts '{output}' must name input indices once", current_loc())
    x, xi = arrays[0], terms[0]
    for k in range(1, len(arrays)):
        later = set(output).union(*terms[k + 1:])
        x, xi = _contract(x, xi, arrays[k], terms[k], later)
    x, xi = _sum_out(x, xi, set(output))
    return ops.transpose(x, [xi.index(c) for c in output]) if xi != output else x


def _sum_out(x, idx, keep):
    gone = [i for i, c in enumerate(idx) if c not in keep]
    if not gone:
        return x, idx
    return ops.sum(x, tuple(gone)), "".join(c for c in idx if c in keep)


def _contract(a, ai, b, bi, keep):
    """a (indices ai) times b (bi), summed over the shared indices not in `keep`: one matmul."""
    a, ai = _sum_out(a, ai, keep | set(bi))
    b, bi = _sum_out(b, bi, keep | set(ai))
    batch = [c for c in ai if c in bi and c in keep]
    inner = [c for c in ai if c in bi and c not in keep]
    left = [c for c in ai if c not in bi]
    right = [c for c in bi if c not in ai]
    size = dict(zip(ai, a.shape)) | dict(zip(bi, b.shape))
    n = lambda cs: int(np.prod([size[c] for c in cs], dtype=np.int64))  # noqa: E731
    A = ops.reshape(ops.transpose(a, [ai.index(c) for c in batch + left + inner]),
                    ([n(batch)] if batch else []) + [n(left), n(inner)])
    B = ops.reshape(ops.transpose(b, [bi.index(c) for c in batch + inner + right]),
                    ([n(batch)] if batch else []) + [n(inner), n(right)])
    product = ops.matmul(A, B)
    out = batch + left + right
    return ops.reshape(product, tuple(size[c] for c in out)), "".join(out)


def tensordot(a, b, axes=2):
    a, b = _array(a), _array(b)
    if isinstance(axes, (int, np.integer)):
        k = int(axes)
        a_axes, b_axes = list(range(a.ndim - k, a.ndim)), list(range(k))
    else:
        a_axes, b_axes = ([x] if isinstance(x, (int, np.integer)) else list(x) for x in axes)
        a_axes = [_axis(i, a.ndim) for i in a_axes]
        b_axes = [_axis(i, b.ndim) for i in b_axes]
    letters = iter("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    ai = [next(letters) for _ in range(a.ndim)]
    bi = [next(letters) for _ in range(b.ndim)]
    for i, j in zip(a_axes, b_axes):
        bi[j] = ai[i]
    out = [c for i, c in enumerate(ai) if i not in a_axes] + [c for j, c in enumerate(bi) if j not in b_axes]
    return einsum(f"{''.join(ai)},{''.join(bi)}->{''.join(out)}", a, b)


def inner(a, b, /):
    a, b = _array(a), _array(b)
    if a.ndim == 0 or b.ndim == 0:
        return ops.mul(a, b)
    return tensordot(a, b, ([a.ndim - 1], [b.ndim - 1]))


def trace(a, offset=0, axis1=0, axis2=1):
    a = _array(a)
    if a.ndim != 2 or (axis1, axis2) != (0, 1):
        raise CompileError("np.trace of a matrix (2-d, axis1=0, axis2=1) is supported", current_loc(),
                           "For stacks of matrices, loop over them or use np.einsum on each.")
    k = _static_int(offset, "np.trace's offset")
    terms = [ops.index(a, (i, i + k)) for i in range(a.shape[0]) if 0 <= i + k < a.shape[1]]
    return ops.sum(ops.stack(terms)) if terms else ops.fill(0.0, (), a.dtype)


def kron(a, b, /):
    a, b = _array(a), _array(b)
    ndim = max(a.ndim, b.ndim)
    a = ops.reshape(a, (1,) * (ndim - a.ndim) + a.shape)
    b = ops.reshape(b, (1,) * (ndim - b.ndim) + b.shape)
    spread_a = ops.reshape(a, tuple(x for s in a.shape for x in (s, 1)))
    spread_b = ops.reshape(b, tuple(x for s in b.shape for x in (1, s)))
    return ops.reshape(ops.mul(spread_a, spread_b), tuple(p * q for p, q in zip(a.shape, b.shape)))


def cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None):
    a, b = _array(a), _array(b)
    if axis is not None or (axisa, axisb, axisc) != (-1, -1, -1):
        raise CompileError("np.cross along another axis than the last is not supported", current_loc(),
                           "Move the vectors' axis last (np.moveaxis) first.")
    if a.shape[-1] != 3 or b.shape[-1] != 3:
        raise ShapeError(f"np.cross of shapes {a.shape} and {b.shape}: 3-vectors along the last axis are "
                         "supported", current_loc())
    c = [ops.index(x, (Ellipsis, i)) for x in (a, b) for i in range(3)]
    (a0, a1, a2), (b0, b1, b2) = c[:3], c[3:]
    parts = [ops.sub(ops.mul(a1, b2), ops.mul(a2, b1)), ops.sub(ops.mul(a2, b0), ops.mul(a0, b2)),
             ops.sub(ops.mul(a0, b1), ops.mul(a1, b0))]
    return ops.stack(parts, -1)


# ---- angles, indices of extremes, axes, powers of matrices -----------------------------------------------

def arctan2(x1, x2, /):
    """The angle of (x2, x1): arctan(y/x) (plus or minus pi for x < 0) where |x| >= |y|, and
    sign(y)*pi/2 - arctan(x/y) elsewhere, so both branches are smooth where they are taken and the
    derivative is x/(x^2 + y^2), -y/(x^2 + y^2) everywhere but the origin (0 there, where the angle is 0
    as NumPy's, and a y of -0.0 on the negative x axis gives pi where NumPy gives -pi)."""
    if not isinstance(x1, Value) and not isinstance(x2, Value):
        return np.arctan2(x1, x2)
    y, x = x1, x2
    upper = ops.compare("ge", y, 0.0)
    flat = ops.compare("ge", ops.absolute(x), ops.absolute(y))
    across = ops.where(ops.compare("lt", x, 0.0), ops.where(upper, math.pi, -math.pi), 0.0)
    near_x = ops.add(ops.unary("arctan", ops.div(y, x)), across)
    near_y = ops.sub(ops.where(upper, math.pi / 2, -math.pi / 2), ops.unary("arctan", ops.div(x, y)))
    origin = ops.logical("and", ops.compare("eq", x, 0.0), ops.compare("eq", y, 0.0))
    return ops.where(origin, 0.0, ops.where(flat, near_x, near_y))


def _arg_extreme(a, axis, keepdims, largest):
    """The first index of the largest (smallest) entry along `axis`, as a float array (derivative 0): the
    least index among the entries equal to the extreme."""
    a = _array(a)
    if axis is None:
        a, axis = ops.reshape(a, (a.size,)), 0
    ax = _axis(axis, a.ndim)
    n = a.shape[ax]
    extreme = (ops.amax if largest else ops.amin)(a, ax, True)
    shape = [1] * a.ndim
    shape[ax] = n
    positions = _made(np.arange(n, dtype=np.float64).reshape(shape), f"np.arange({n}, dtype=np.float64)"
                      f".reshape({tuple(shape)!r})")
    hit = ops.compare("eq", a, extreme)  # a comparison: nothing flows back through it
    return ops.amin(ops.where(hit, positions, float(n)), ax, bool(keepdims))


def argmax(a, axis=None, keepdims=False):
    return _arg_extreme(a, axis, keepdims, True)


def argmin(a, axis=None, keepdims=False):
    return _arg_extreme(a, axis, keepdims, False)


def rollaxis(a, axis, start=0):
    a = _array(a)
    axis = _axis(axis, a.ndim)
    start = _static_int(start, "np.rollaxis's start")
    if start < 0:
        start += a.ndim
    if not 0 <= start <= a.ndim:
        raise ShapeError(f"np.rollaxis: start {start} is out of range for {a.ndim} dimensions", current_loc())
    order = [i for i in range(a.ndim) if i != axis]
    order.insert(start - 1 if axis < start else start, axis)
    return ops.transpose(a, order)


def matrix_power(a, n):
    """a @ a @ ... by repeated squaring (n known at specialisation; n = 0 is the identity, n < 0 powers of
    np.linalg.inv(a))."""
    a = _array(a)
    n = _static_int(n, "np.linalg.matrix_power's exponent")
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ShapeError(f"np.linalg.matrix_power needs square matrices, got shape {a.shape}", current_loc())
    if n < 0:
        if a.ndim != 2:
            raise CompileError("np.linalg.matrix_power of a stack of matrices with a negative exponent is not "
                               "supported", current_loc(), "Loop over the matrices.")
        a, n = linalg.inv(a), -n
    dt = a.dtype if a.dtype.kind == "f" else np.dtype(np.float64)
    if n == 0:
        return ops.mul(ops.fill(1.0, a.shape, dt), eye(a.shape[-1], dtype=dt))
    result, square = None, a
    while True:
        if n & 1:
            result = square if result is None else ops.matmul(result, square)
        n >>= 1
        if not n:
            return result
        square = ops.matmul(square, square)


# ---- constant arrays and masks ------------------------------------------------------------------------

def _numbers(*xs):
    for x in xs:
        if isinstance(x, Value) or not isinstance(x, (int, float, np.integer, np.floating)) or isinstance(x, bool):
            raise CompileError(f"this array's bounds must be numbers known at specialisation, got "
                               f"{type(x).__name__}", current_loc(),
                               "Use numbers, shapes (x.shape[0]) or parameters that steer the program.")
    return [int(x) if isinstance(x, (int, np.integer)) else float(x) for x in xs]


def _dtype(dtype):
    dt = np.dtype(np.float64 if dtype is None else dtype)
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise CompileError(f"dtype={dtype!r}: a model's arrays are float arrays", current_loc(),
                           "Leave dtype out (float64; integer ranges become floats) or give np.float32.")
    return dt


def _made(array, call):
    """The constant `array`, printed in generated code as `call` (which computes the same values)."""
    return constant(array, call)


def arange(start, stop=None, step=None, dtype=None):
    args = _numbers(*(a for a in (start, stop, step) if a is not None))
    dt = _dtype(dtype)
    text = f"np.arange({', '.join(map(repr, args))}, dtype=np.{dt})"
    out = _made(np.arange(*args, dtype=dt), text)
    if out.node.prim is Constant and all(isinstance(a, int) for a in args):
        out.node.attrs["int_text"] = f"np.arange({', '.join(map(repr, args))})"  # as an index (gather.py)
    return out


def linspace(start, stop, num=50, endpoint=True, dtype=None):
    start, stop, num = _numbers(start, stop, num)
    dt = _dtype(dtype)
    text = f"np.linspace({start!r}, {stop!r}, {num}, endpoint={bool(endpoint)}, dtype=np.{dt})"
    return _made(np.linspace(start, stop, num, endpoint=bool(endpoint), dtype=dt), text)


def eye(N, M=None, k=0, dtype=None):
    N, M, k = _numbers(N, N if M is None else M, k)
    dt = _dtype(dtype)
    return _made(np.eye(N, M, k, dtype=dt), f"np.eye({N}, {M}, k={k}, dtype=np.{dt})")


def identity(n, dtype=None):
    return eye(n, dtype=dtype)


def tri(N, M=None, k=0, dtype=None):
    N, M, k = _numbers(N, N if M is None else M, k)
    dt = _dtype(dtype)
    return _made(np.tri(N, M, k, dtype=dt), f"np.tri({N}, {M}, k={k}, dtype=np.{dt})")


def _mask(m, k, lower):
    m = _array(m)
    if m.ndim < 2:
        raise ShapeError(f"np.{'tril' if lower else 'triu'} needs at least 2 dimensions, got {m.shape}", current_loc())
    n, cols = m.shape[-2:]
    k = _static_int(k, "the diagonal offset k")
    dt = m.dtype if m.dtype.kind == "f" else np.dtype(np.float64)
    if lower:
        mask = _made(np.tri(n, cols, k, dtype=dt), f"np.tri({n}, {cols}, k={k}, dtype=np.{dt})")
    else:
        mask = _made(1 - np.tri(n, cols, k - 1, dtype=dt), f"1 - np.tri({n}, {cols}, k={k - 1}, dtype=np.{dt})")
    return ops.mul(m, mask)


def tril(m, k=0):
    return _mask(m, k, True)


def triu(m, k=0):
    return _mask(m, k, False)


def diag(v, k=0):
    v = _array(v)
    k = _static_int(k, "the diagonal offset k")
    if v.ndim == 2:
        return diagonal(v, k)
    if v.ndim != 1:
        raise ShapeError(f"np.diag takes a 1-d or 2-d array, got shape {v.shape}", current_loc())
    n = v.shape[0]
    size = n + abs(k)
    dt = v.dtype if v.dtype.kind == "f" else np.dtype(np.float64)
    rows = ops.mul(ops.reshape(v, (n, 1)), eye(n, size, max(k, 0), dtype=dt))
    if k == 0:
        return rows
    zeros = ops.fill(0.0, (abs(k), size), rows.dtype)
    return ops.concatenate([rows, zeros] if k > 0 else [zeros, rows], 0)


def diagonal(a, offset=0, axis1=0, axis2=1):
    a = _array(a)
    if a.ndim != 2 or (axis1, axis2) != (0, 1):
        raise CompileError("np.diagonal of a matrix (2-d, axis1=0, axis2=1) is supported", current_loc(),
                           "For stacks of matrices, loop over them.")
    n, m = a.shape
    k = _static_int(offset, "the offset")
    dt = a.dtype if a.dtype.kind == "f" else np.dtype(np.float64)
    rows = ops.sum(ops.mul(a, eye(n, m, k, dtype=dt)), 1)
    lo, hi = max(0, -k), max(0, min(n, m - k))
    return ops.index(rows, (slice(lo, max(lo, hi)),))


def _truth(name, reduce):
    """np.any / np.all: whether some / every element along `axis` is nonzero (a boolean: derivative zero),
    the one decision an `if` or `while` on an array needs."""
    def fn(a, axis=None, out=None, keepdims=False):
        _no_dtype_out(None, out, f"np.{name}")
        if not isinstance(a, Value):
            return getattr(np, name)(a, axis=axis, keepdims=keepdims)
        hits = ops.where(a if a.dtype.kind == "b" else ops.compare("ne", a, 0.0), 1.0, 0.0)
        return ops.compare("gt", reduce(hits, axis, keepdims), 0.0)
    fn.__name__ = name
    return fn


NUMPY = {
    "any": _truth("any", ops.amax), "all": _truth("all", ops.amin),
    "var": var, "std": std, "prod": prod, "cumsum": cumsum, "cumprod": cumprod, "diff": diff,
    "remainder": remainder, "mod": remainder, "fmod": fmod, "heaviside": heaviside,
    "deg2rad": deg2rad, "radians": deg2rad, "rad2deg": rad2deg, "degrees": rad2deg,
    "logaddexp": logaddexp, "logaddexp2": logaddexp2, "hypot": hypot,
    "log2": _scaled_log("log2", _LN2), "log10": _scaled_log("log10", _LN10), "exp2": exp2,
    "squeeze": squeeze, "swapaxes": swapaxes, "moveaxis": moveaxis, "broadcast_to": broadcast_to,
    "atleast_1d": _atleast(1), "atleast_2d": _atleast(2), "atleast_3d": _atleast(3),
    "flip": flip, "roll": roll, "repeat": repeat, "tile": tile, "split": split, "array_split": array_split,
    "pad": pad, "einsum": einsum, "tensordot": tensordot, "inner": inner, "trace": trace, "kron": kron,
    "cross": cross, "arange": arange, "linspace": linspace, "eye": eye, "identity": identity, "tri": tri,
    "tril": tril, "triu": triu, "diag": diag, "diagonal": diagonal,
    "arctan2": arctan2, "argmax": argmax, "argmin": argmin, "rollaxis": rollaxis,
}

LINALG = {"norm": norm, "matrix_power": matrix_power, "solve": linalg.solve, "inv": linalg.inv, "det": linalg.det,
          "slogdet": linalg.slogdet, "cholesky": linalg.cholesky, "eigh": linalg.eigh,
          "eigvalsh": linalg.eigvalsh, "pinv": linalg.pinv}
