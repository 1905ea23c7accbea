"""What `np.<name>`, `math.<name>` and array methods mean to the compiler.

Each entry is a Python function over Values and static Python values that builds
IR through primitives.ops; on static numbers it computes the number itself.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import CompileError, ShapeError
from ..ir import Value, current_loc
from ..primitives import gather, ops, scalar
from . import compositions


def _all_static(*xs):
    return not any(isinstance(x, Value) for x in xs)


def _unary(function, name):
    """np.<name>: on a number, what NumPy computes (np.exp(0.5) is NumPy's float64 scalar, which unlike
    a Python float widens a float32 array it meets: NEP 50; math.exp gives a Python float, see _math);
    on an array, a kernel of its body."""
    def fn(x, /):
        if _all_static(x):
            with np.errstate(all="ignore"):
                return getattr(np, function.name)(x)
        return ops.unary(name, x)
    fn.__name__ = name
    return fn


def _sum(a, axis=None, keepdims=False):
    return ops.sum(a, axis, keepdims) if not _all_static(a) else a


def _mean(a, axis=None, keepdims=False):
    return ops.mean(a, axis, keepdims) if not _all_static(a) else a


def _max(a, axis=None, keepdims=False):
    return ops.amax(a, axis, keepdims) if not _all_static(a) else a


def _min(a, axis=None, keepdims=False):
    return ops.amin(a, axis, keepdims) if not _all_static(a) else a


def _where(condition, x, y, /):
    return ops.where(condition, x, y)


def _clip(a, a_min=None, a_max=None):
    return ops.clip(a, a_min, a_max)


def _binary(fn_static, fn_ops):
    def fn(x1, x2, /):
        if _all_static(x1, x2):
            with np.errstate(all="ignore"):
                return fn_static(x1, x2)
        return fn_ops(x1, x2)
    return fn


def _transpose(a, axes=None):
    return ops.transpose(a, axes)


def _shape_arg(shape, more):
    if more:
        return (shape,) + tuple(more)
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    return tuple(shape)


def _reshape(a, shape, *more):
    return ops.reshape(a, _shape_arg(shape, more))


def _concatenate(arrays, axis=0):
    return ops.concatenate(_sequence(arrays, "np.concatenate"), axis)


def _stack(arrays, axis=0):
    return ops.stack(_sequence(arrays, "np.stack"), axis)


def _sequence(xs, what):
    if not isinstance(xs, (list, tuple)):
        raise CompileError(f"{what} takes a list or tuple of arrays", current_loc(),
                           f"Write {what}([a, b], axis=0).")
    return list(xs)


def _expand_dims(a, axis):
    shape = list(ops.as_value(a).shape)
    ndim = len(shape) + 1
    axes = ops.normalize_axes(axis, ndim)
    for ax in axes:
        shape.insert(ax, 1)
    return ops.reshape(a, shape)


def _zeros_like(a):
    return ops.zeros_like(ops.as_value(a))


def _ones_like(a):
    a = ops.as_value(a)
    return ops.fill(1.0, a.shape, a.dtype if a.dtype.kind == "f" else np.float64)


# ---- making arrays of a shape known at specialisation ---------------------------------------

_FLOAT_DTYPES = {np.dtype(np.float64), np.dtype(np.float32)}


def _static_shape(shape, what):
    """np.zeros(3), np.zeros((2, 3)), np.zeros(x.shape): ints known at specialisation, never values."""
    dims = (shape,) if isinstance(shape, (int, np.integer)) else shape
    if (isinstance(dims, (tuple, list)) and
            all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in dims)):
        return tuple(int(d) for d in dims)
    raise CompileError(f"{what}'s shape must be known at specialisation, got {shape!r}", current_loc(),
                       f"Give {what} an int or a tuple of ints: a number, x.shape, len(xs), or an int "
                       "parameter that steers the program.")


def _float_dtype(dtype, what, default=np.float64):
    if dtype is None:
        return np.dtype(default)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in _FLOAT_DTYPES:
        raise CompileError(f"{what}(..., dtype={dtype!r}): a model's arrays are float arrays", current_loc(),
                           "Leave dtype out (float64) or give np.float32 / np.float64.")
    return dt


def _filled(value, what):
    def make(shape, dtype=None):
        return ops.fill(value, _static_shape(shape, what), _float_dtype(dtype, what), made=True)
    make.__name__ = what
    return make


def _full(shape, fill_value, dtype=None):
    """np.full(shape, v): v a number, or an array broadcast to `shape` (as NumPy does)."""
    shape = _static_shape(shape, "np.full")
    if _all_static(fill_value):
        return ops.fill(fill_value, shape, _float_dtype(dtype, "np.full"), made=True)
    value = ops.as_value(fill_value)
    ones = ops.fill(1.0, shape, _float_dtype(dtype, "np.full", default=value.dtype), made=dtype is not None)
    out = ops.mul(ones, value)
    if out.shape != shape:
        raise ShapeError(f"np.full({shape}, v): v of shape {value.shape} does not broadcast to that shape",
                         current_loc())
    return out


def _array(obj, dtype=None):
    """np.array([...]) of numbers and arrays, nested: one value stacked from its parts (np.stack's rule)."""
    if isinstance(obj, (list, tuple)):
        if not obj:
            raise CompileError("np.array([]) has no elements", current_loc(),
                               "Build arrays with at least one element, or pass them as parameters.")
        parts = [_array(x) for x in obj]
        like = next((p for p in parts if isinstance(p, Value)), None)
        target = _float_dtype(dtype, "np.array", default=like.dtype if like is not None else np.float64)
        values = [ops.fill(p, (), target, made=True) if not isinstance(p, Value) else p for p in parts]
        shapes = {v.shape for v in values}
        if len(shapes) > 1:
            raise CompileError(f"np.array of parts with shapes {[v.shape for v in values]}: the parts of an "
                               "array must have one shape", current_loc(),
                               "Give every element the same shape (NumPy would make a ragged object array).")
        return ops.stack(values, 0)
    if isinstance(obj, Value):
        if dtype is not None and _float_dtype(dtype, "np.array") != obj.dtype:
            raise CompileError(f"np.array(x, dtype={dtype!r}) of a {obj.dtype} array changes its dtype",
                               current_loc(), "Arrays keep the dtype they are passed with: pass the array in "
                               "the dtype you want.")
        return ops.copy(obj)   # np.array copies
    if isinstance(obj, (int, float, np.integer, np.floating)) and not isinstance(obj, bool):
        return obj if dtype is None else ops.fill(obj, (), _float_dtype(dtype, "np.array"), made=True)
    raise CompileError(f"np.array of {type(obj).__name__}", current_loc(),
                       "np.array takes numbers, arrays and (nested) lists or tuples of them.")


def _power(x1, x2, /):
    return ops.power(x1, x2)


# The scalar functions' names come from the table in primitives.scalar. A function of one argument
# traces through ops.unary; one of several through its builder in ops (arithmetic shares the builders
# of Python's operators), computing what NumPy does on numbers...
_BUILDERS = {"add": ops.add, "subtract": ops.sub, "multiply": ops.mul, "divide": ops.div,
             "maximum": ops.maximum, "minimum": ops.minimum, "fmax": ops.maximum, "fmin": ops.minimum}
# ...except these, whose builder takes numbers too (a power of numbers is Python's) or checks the
# arguments' dtypes (a boolean condition)
_OWN = {
    "power": _power,
    "where": _where,
    "logical_not": lambda x, /: ops.logical_not(x, "np.logical_not"),
    "logical_and": lambda x1, x2, /: ops.logical("and", x1, x2),
    "logical_or": lambda x1, x2, /: ops.logical("or", x1, x2),
}


def _function(function, name):
    if function.name in _OWN:
        return _OWN[function.name]
    if function.arity == 1:
        return _unary(function, name)
    return _binary(getattr(np, function.name), _BUILDERS[function.name])


def _numpy_result(fn):
    """np.<name> on a Python float argument (a weak value) gives NumPy's float64 scalar (ops.numpy_scalar);
    math.<name> shares the function and gives a Python float (_math)."""
    def on_values(*xs, **kw):
        return ops.numpy_scalar(fn(*xs, **kw))
    on_values.__name__ = fn.__name__
    return on_values


NUMPY = {name: _numpy_result(_function(function, name)) for name, function in scalar.NUMPY_NAMES.items()}
NUMPY.update(
    sum=_sum, mean=_mean, max=_max, min=_min, amax=_max, amin=_min,
    clip=_clip,
    dot=ops.dot, matmul=ops.matmul, outer=ops.outer,
    transpose=_transpose, reshape=_reshape, concatenate=_concatenate, stack=_stack,
    expand_dims=_expand_dims, zeros_like=_zeros_like, ones_like=_ones_like,
    zeros=_filled(0.0, "np.zeros"), ones=_filled(1.0, "np.ones"), full=_full, array=_array,
    # np.empty's elements are undefined until assigned; here they read as 0 (docs/language.md)
    empty=_filled(0.0, "np.empty"), empty_like=_zeros_like,
)
NUMPY.update(compositions.NUMPY)
NUMPY.update(take=gather.take, take_along_axis=gather.take_along_axis, sort=gather.sort, argsort=gather.argsort)
NUMPY["copy"] = lambda a, /: ops.copy(a)

#: np.<submodule>.<name>
SUBMODULES = {"linalg": compositions.LINALG}

def _scalar_type(name):
    """np.float32(0.5): a NumPy scalar of that type, which keeps its type in arithmetic (NEP 50)."""
    def make(x, /):
        if _all_static(x):
            return getattr(np, name)(x)
        raise CompileError(f"np.{name}(...) of an array is not supported", current_loc(),
                           f"Arrays keep the dtype they are passed with: pass the array as {name} already "
                           f"(np.{name}(number) is fine).")
    make.__name__ = name
    return make


NUMPY.update(float32=_scalar_type("float32"), float64=_scalar_type("float64"))

NUMPY_CONSTANTS = {"pi": math.pi, "e": math.e, "inf": math.inf, "newaxis": None, "euler_gamma": np.euler_gamma}

def _math(fn):
    """A math-module function: on numbers, a Python float as math.exp gives (weak next to float32 arrays)."""
    def on_numbers(*xs):
        result = fn(*xs)
        return float(result) if _all_static(*xs) else result
    on_numbers.__name__ = fn.__name__
    return on_numbers


MATH = {name: _OWN[function.name] if function.name in _OWN else _math(_function(function, name))
        for name, function in scalar.MATH_NAMES.items()}

MATH_CONSTANTS = {"pi": math.pi, "e": math.e, "inf": math.inf, "tau": math.tau}


def _method_reshape(a, *shape):
    if len(shape) == 1:
        return ops.reshape(a, _shape_arg(shape[0], ()))
    return ops.reshape(a, tuple(shape))


def _method_transpose(a, *axes):
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    return ops.transpose(a, axes or None)


METHODS = {
    "sum": _sum, "mean": _mean, "max": _max, "min": _min,
    "reshape": _method_reshape, "transpose": _method_transpose,
    "dot": ops.dot, "clip": _clip,
    "copy": lambda a: ops.copy(a),
    "var": compositions.var, "std": compositions.std, "prod": compositions.prod, "cumsum": compositions.cumsum,
    "cumprod": compositions.cumprod, "argmax": compositions.argmax, "argmin": compositions.argmin,
    "squeeze": compositions.squeeze, "swapaxes": compositions.swapaxes, "repeat": compositions.repeat,
    "ravel": lambda a: ops.reshape(a, (a.size,)),
    "flatten": lambda a: ops.reshape(a, (a.size,)),
}

ATTRIBUTES = {
    "T": lambda a: ops.transpose(a),
    "shape": lambda a: a.shape,
    "ndim": lambda a: a.ndim,
    "size": lambda a: a.size,
}

#: what a model may call from symbackprop itself (`sb.stop_gradient(x)`)
SYMBACKPROP = {"stop_gradient": ops.stop_gradient}
