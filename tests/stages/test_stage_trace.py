"""Trace: a model's Python source run on a signature becomes the forward graph.

Checks what the tracer decides: one node per array operation (loops unrolled,
branches on static values picked, helpers inlined), values named after the
variables they are assigned to, dtypes and weak Python floats as NumPy has them,
each node located at its model line, and equal operations built once.
"""
import inspect

import numpy as np
import sympy

# the package, in one place
from symbackprop import backends
from symbackprop.frontend import signature
from symbackprop.pipeline import stages
from symbackprop.program import Program
from symbackprop.primitives import elementwise, index, linalg, reduce

import stagekit as kit


# ---- models (module level: the tracer reads their source) --------------------------------------

def layer(x, W, b):
    h = np.tanh(x @ W + b)
    return np.sum(h)


def stacked(x, Ws):
    for i in range(3):
        x = np.tanh(x @ Ws[i])
    return np.mean(x)


def branches(x, use_exp):
    if use_exp:
        return np.sum(np.exp(x))
    return np.sum(np.log(x))


def twice(x):
    a = x * 2.0
    b = x * 2.0
    return np.sum(a + b)


def scalars(x, y):
    return x * y + 1.0


def identity(x):
    return x


def _helper(u):
    return np.exp(u) * 3.0


def with_helper(x):
    v = _helper(x)
    return np.sum(v)


def trace(fn, *args):
    """The forward graph of `fn` specialised on example arguments."""
    names = list(inspect.signature(fn).parameters)
    specs = [signature.spec_of(n, x, False) for n, x in zip(names, args)]
    program = Program(fn, tuple(specs), backends.get("numpy"), "forward")
    stages.trace_model(program)  # the trace stage alone
    return program.graph


def line_of(fn, text):
    """The file line of the first line of `fn` containing `text` (read from its source, not the tracer)."""
    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, line in enumerate(lines) if text in line)


# ---- tests ---------------------------------------------------------------------------------------

def test_layer_is_one_node_per_array_operation():
    g = trace(layer, np.zeros((4, 3)), np.zeros((3, 2)), np.zeros(2))
    assert [p.name for p in g.params] == ["x", "W", "b"]
    assert [p.shape for p in g.params] == [(4, 3), (3, 2), (2,)]
    # x @ W, + b, tanh, sum: the tracer does not fuse (that is the fusion pass's job)
    assert [n.prim for n in g.nodes] == [linalg.MatMul, elementwise.Kernel, elementwise.Kernel, reduce.Sum]
    matmul, add, tanh, total = g.nodes
    x, W, b = g.params
    assert matmul.inputs == [x, W]
    z = matmul.out
    assert kit.named(add, names={z: "z"}) == kit.sym("z") + kit.sym("b")
    assert kit.named(tanh, names={add.out: "u"}) == sympy.tanh(kit.sym("u"))
    assert total.inputs == [tanh.out] and total.attrs["axes"] == (0, 1)
    # the value assigned to `h` is named h; the returned one is the loss
    assert tanh.out.name == "h"
    assert g.result is total.out and g.result.name == "loss" and g.result.shape == ()


def test_nodes_are_located_at_their_model_lines():
    g = trace(layer, np.zeros((4, 3)), np.zeros((3, 2)), np.zeros(2))
    body, ret = line_of(layer, "h = np.tanh"), line_of(layer, "return")
    assert [n.loc.line for n in g.nodes] == [body, body, body, ret]


def test_loop_unrolls_with_one_layer_per_iteration():
    g = trace(stacked, np.zeros((4, 3), np.float32), np.zeros((3, 3, 3), np.float32))
    indexes = [n for n in g.nodes if n.prim is index.Index]
    products = [n for n in g.nodes if n.prim is linalg.MatMul]
    tanhs = [n for n in kit.kernels(g) if kit.body(n).has(sympy.tanh)]
    assert len(indexes) == len(products) == len(tanhs) == 3
    # Ws[i] for i = 0, 1, 2, each named after its slot (its gradient is then d_Ws_i)
    assert [n.attrs["index"][0] for n in indexes] == [0, 1, 2]
    assert [n.out.name for n in indexes] == ["Ws_0", "Ws_1", "Ws_2"]
    # each layer reads the previous layer's output
    x = g.params[0]
    assert products[0].inputs[0] is x
    assert [p.inputs[0] for p in products[1:]] == [t.out for t in tanhs[:-1]]
    # float32 stays float32 (NumPy's rules): no value widens
    assert all(v.dtype == np.float32 for n in g.nodes for v in n.outputs)
    # np.mean over 4 x 3 elements is the sum divided by 12
    total, mean = g.nodes[-2:]
    assert total.prim is reduce.Sum and total.inputs == [tanhs[-1].out]
    assert kit.named(mean, names={total.out: "s"}) == kit.sym("s") / 12


def test_a_static_branch_is_decided_while_tracing():
    g = trace(branches, np.ones(4), True)
    assert [p.name for p in g.params] == ["x"]  # a static argument is no parameter
    assert any(kit.body(n).has(sympy.exp) for n in kit.kernels(g))
    assert not any(kit.body(n).has(sympy.log) for n in kit.kernels(g))
    g = trace(branches, np.ones(4), False)
    assert not any(kit.body(n).has(sympy.exp) for n in kit.kernels(g))


def test_equal_operations_on_equal_inputs_are_built_once():
    g = trace(twice, np.zeros(4))
    # a = x*2 and b = x*2 are one node; a + b reads it twice, which the kernel writes as 2*a
    doubles = [n for n in kit.kernels(g) if n.inputs == g.params]
    assert len(doubles) == 1 and kit.named(doubles[0]) == 2 * kit.sym("x")
    added = [n for n in kit.kernels(g) if n.inputs == [doubles[0].out]]
    assert len(added) == 1 and kit.named(added[0]) == 2 * kit.sym("a")
    assert len(g.nodes) == 3


def test_python_floats_are_weak_scalars():
    g = trace(scalars, 1.5, 2.5)
    assert all(p.shape == () and p.dtype == np.float64 and p.weak for p in g.params)
    # computed from Python floats only: still weak (it would not widen a float32 array)
    assert all(v.weak for n in g.nodes for v in n.outputs)


def test_returning_a_parameter_gives_the_loss_a_node():
    g = trace(identity, 2.0)
    (node,) = g.nodes
    assert g.result is node.out and g.result is not g.params[0]
    assert node.inputs == g.params and kit.body(node) == kit.a(0)


def test_helpers_are_inlined():
    g = trace(with_helper, np.zeros(5))
    # no call node: the helper's exp and product are nodes of the caller's graph, named by the caller
    bodies = [kit.body(n) for n in kit.kernels(g)]
    assert bodies == [sympy.exp(kit.a(0)), 3 * kit.a(0)]
    assert kit.kernels(g)[1].out.name == "v"
