"""What the stage tests share: IR built by hand, kernel bodies read back, and a reference evaluator.

The evaluator runs a graph with plain NumPy, one rule per primitive written from the
primitive's documented meaning (a kernel's SymPy body goes through sympy.lambdify, not
through the package's printers), so numeric checks never go through the code under test.
"""
from __future__ import annotations

import functools

import numpy as np
import sympy

# the package, in one place: a module move is a one-line fix here
from symbackprop import ir
from symbackprop.primitives import composite, elementwise, index, linalg, reduce, shape


def graph():
    """A fresh graph (build into it with `with building(g):`)."""
    return ir.Graph()


building = ir.building


def param(g, name, shape_, dtype=np.float64, weak=False):
    """A parameter of `g`: a Value with no producing node, named as the user named it."""
    v = ir.Value(shape_, dtype, None, name)
    v.weak = weak
    g.params.append(v)
    return v


def a(i):
    """The symbol a kernel body uses for its i-th input."""
    return elementwise.arg(i)


def is_kernel(node):
    return node.prim is elementwise.Kernel


def kernels(g):
    return [n for n in g.nodes if is_kernel(n)]


def bodies(node):
    """A kernel's output expressions with its program's temps substituted."""
    return elementwise.expand(node.attrs["program"], node.attrs["outs"])


def body(node):
    (only,) = bodies(node)
    return only


def named(node, expr=None, names=None):
    """`expr` (default: the kernel's single body) over symbols named after the node's inputs.

    `names` maps input Values to the names to use; otherwise each input's own name.
    Lets a test state a body as a person writes it: y*(1 - h**2), not a0*(1 - a1**2).
    """
    expr = body(node) if expr is None else expr
    names = names or {}
    subs = {}
    for i, v in enumerate(node.inputs):
        label = names.get(v, v.name)
        assert label, f"input {i} of {node} has no name to write it by"
        subs[a(i)] = sympy.Symbol(label, real=True)
    return expr.xreplace(subs)


def sym(*labels):
    """Real symbols, as `named` writes inputs."""
    out = [sympy.Symbol(s, real=True) for s in labels]
    return out[0] if len(out) == 1 else out


def users(g, v):
    return [n for n in g.nodes if any(u is v for u in n.inputs)]


def live_nodes(g, results):
    """The nodes some result depends on (computed here, not by the dead-code pass)."""
    need, live = set(results), []
    for node in reversed(g.nodes):
        if any(v in need for v in node.outputs):
            live.append(node)
            need.update(node.inputs)
    return live[::-1]


# ---- a reference evaluator ------------------------------------------------------------------

def _where(c, x, y):
    return np.where(np.asarray(c, dtype=bool), x, y)


def _as_number(compare):
    return lambda x, y: compare(x, y).astype(np.float64)


# SymPy functions the package defines, by the name lambdify prints them with
SCALAR_NUMPY = {
    "sigmoid": lambda u: 1.0 / (1.0 + np.exp(-u)),
    "softplus": lambda u: np.logaddexp(0.0, u),
    "expm1": np.expm1, "log1p": np.log1p,
    "maximum": np.maximum, "minimum": np.minimum, "where": _where,
    "absolute": np.abs, "sign": np.sign,
    # comparisons are 0/1 numbers in a body (SymPy adds them); a boolean output is cast back by `evaluate`
    "gt": _as_number(np.greater), "ge": _as_number(np.greater_equal), "lt": _as_number(np.less),
    "le": _as_number(np.less_equal), "eq": _as_number(np.equal), "ne": _as_number(np.not_equal),
    "logical_and": np.logical_and, "logical_or": np.logical_or, "logical_not": np.logical_not,
}


def numeric(expr, symbols):
    """A NumPy function of `symbols` computing SymPy `expr` (through sympy.lambdify)."""
    return sympy.lambdify(symbols, expr, modules=[SCALAR_NUMPY, "numpy"])


@functools.lru_cache(maxsize=1024)
def _kernel_function(outs, n_inputs):
    return numeric(list(outs), [a(i) for i in range(n_inputs)])


def _kernel(node, xs):
    with np.errstate(all="ignore"):
        values = _kernel_function(tuple(bodies(node)), len(xs))(*[np.asarray(x, dtype=np.float64) if x.dtype.kind != "b" else x
                                             for x in xs])
    return [np.broadcast_to(np.asarray(v), node.attrs["shape"]) for v in values]


def _sum_to(node, xs):
    (x,), target = xs, node.attrs["shape"]
    lead = x.ndim - len(target)
    x = x.sum(axis=tuple(range(lead)))
    stretched = tuple(i for i, s in enumerate(target) if s == 1 and x.shape[i] != 1)
    return [x.sum(axis=stretched, keepdims=True) if stretched else x]


def _scatter_add(node, xs):
    out = np.zeros(node.attrs["shape"], node.attrs["dtype"])
    for key, x in zip(node.attrs["indexes"], xs):
        out[key] += x
    return [out]


def _exp_sum(node, xs):
    (z,) = xs
    e = np.exp(z)
    return e, e.sum(axis=node.attrs["axes"], keepdims=True)


def _logsumexp(node, xs):
    e, s = _exp_sum(node, xs)
    lse = np.log(s)
    if not node.attrs["keepdims"]:
        lse = lse.reshape(node.outputs[0].shape)
    return [lse, e, s]


def _log_softmax(node, xs):
    e, s = _exp_sum(node, xs)
    return [xs[0] - np.log(s), e, s]


def _softmax(node, xs):
    e, s = _exp_sum(node, xs)
    return [e / s, e, s]


def _reduction(fn):
    return lambda node, xs: [fn(xs[0], axis=node.attrs["axes"], keepdims=node.attrs["keepdims"])]


RULES = {
    elementwise.Kernel: _kernel,
    elementwise.Fill: lambda node, xs: [np.full(node.attrs["shape"], node.attrs["value"])],
    linalg.MatMul: lambda node, xs: [np.matmul(*xs)],
    linalg.Outer: lambda node, xs: [np.outer(*xs)],
    reduce.Sum: _reduction(np.sum),
    reduce.Max: _reduction(np.max),
    reduce.Min: _reduction(np.min),
    shape.SumTo: _sum_to,
    shape.BroadcastTo: lambda node, xs: [np.broadcast_to(xs[0], node.attrs["shape"])],
    shape.Reshape: lambda node, xs: [np.reshape(xs[0], node.attrs["shape"])],
    shape.Transpose: lambda node, xs: [np.transpose(xs[0], node.attrs["perm"])],
    shape.Concatenate: lambda node, xs: [np.concatenate(xs, axis=node.attrs["axis"])],
    index.Index: lambda node, xs: [xs[0][node.attrs["index"]]],
    index.ScatterAdd: _scatter_add,
    composite.LogSumExp: _logsumexp,
    composite.LogSoftmax: _log_softmax,
    composite.Softmax: _softmax,
}


def evaluate(g, inputs, nodes=None):
    """Every value of `g` (or of `nodes`, in order) on `inputs` ({param: array}); float64 throughout."""
    env = {p: np.asarray(inputs[p], dtype=np.float64 if p.dtype.kind == "f" else p.dtype) for p in g.params}
    for node in g.nodes if nodes is None else nodes:
        results = RULES[node.prim](node, [env[v] for v in node.inputs])
        assert len(results) == len(node.outputs), node
        for v, x in zip(node.outputs, results):
            x = np.asarray(x)
            assert x.shape == v.shape, f"{node}: evaluated to shape {x.shape}, declared {v.shape}"
            env[v] = x.astype(np.float64) if v.dtype.kind == "f" else x.astype(v.dtype)
    return env


def central_differences(f, x, step=1e-6):
    """df/dx for a scalar function f of a float64 array x, by central differences."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for i in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[i] += step
        down[i] -= step
        grad[i] = (f(up) - f(down)) / (2 * step)
    return grad


def random_inputs(g, seed=0, positive=()):
    """Float64 inputs for every parameter (integer ones get small whole numbers)."""
    rng = np.random.default_rng(seed)
    out = {}
    for p in g.params:
        if p.dtype.kind == "f":
            x = rng.normal(size=p.shape)
            out[p] = np.abs(x) + 0.5 if p in positive else x
        else:
            out[p] = rng.integers(0, 3, size=p.shape).astype(p.dtype)
    return out


def check_gradients(g, grads, wrt, nodes, inputs, rtol=1e-6, atol=1e-8):
    """The gradient values in `grads` equal central differences of g.result over the forward `nodes`."""
    env = evaluate(g, inputs)
    for p, gv in zip(wrt, grads):
        def loss(x, p=p):
            return float(evaluate(g, {**inputs, p: x}, nodes)[g.result])
        expected = central_differences(loss, inputs[p])
        np.testing.assert_allclose(env[gv], expected, rtol=rtol, atol=atol, err_msg=f"gradient of {p.name}")
