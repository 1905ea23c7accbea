"""Fusion: a kernel read only by one kernel is inlined into it; then CSE per kernel.

The rules (passes/fuse.py): the producer must be a kernel read by nothing else,
not kept, not named by the user (unless `across_names`), and either of the
consumer's shape or all ones (a scalar is cheap to recompute per element; a row
vector would be recomputed per row). Broadcasts feeding a kernel are absorbed.
"""
import numpy as np
import sympy

# the package, in one place
from symbackprop import errors, ir
from symbackprop.passes import fuse
from symbackprop.primitives import elementwise, ops

import stagekit as kit

x_, b_, c_, z_ = kit.sym("x", "b", "c", "z")


def chain():
    """z = 2*x + b (named), then sum(tanh(z))."""
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (4, 3))
        b = kit.param(g, "b", (3,))
        z = x * 2 + b
        z.name = "z"
        g.result = ops.sum(ops.unary("tanh", z))
    return g


def test_an_unnamed_single_use_chain_becomes_one_kernel():
    g = chain()
    before = kit.evaluate(g, kit.random_inputs(g))[g.result]
    assert len(kit.kernels(g)) == 3  # 2*x, + b, tanh
    fuse.fuse_elementwise(g, keep=[g.result])
    # 2*x is inlined into `+ b`; z stays a statement of its own because the user named it
    first, second = kit.kernels(g)
    assert kit.named(first) == 2 * x_ + b_ and first.out.name == "z"
    assert kit.named(second) == sympy.tanh(z_)
    assert len(g.nodes) == 3
    assert np.allclose(kit.evaluate(g, kit.random_inputs(g))[g.result], before)


def test_across_names_fuses_the_whole_chain_and_remembers_the_name():
    g = chain()
    fuse.fuse_elementwise(g, keep=[g.result], across_names=True)
    (only,) = kit.kernels(g)
    assert kit.named(only) == sympy.tanh(2 * x_ + b_)
    # the code generator can still call the inlined subexpression `z`
    assert only.attrs["names"] == (("z", 2 * kit.a(0) + kit.a(1)),)


def test_a_value_read_twice_is_not_inlined():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (4, 3))
        e = ops.unary("exp", x)
        g.result = ops.sum((e + 1) * (e * 3))
    fuse.fuse_elementwise(g, keep=[g.result])
    # exp(x) has two readers: inlining it would compute it twice. Those two readers are read once
    # each, by the product, so they are inlined into it.
    exp, product = kit.kernels(g)
    assert kit.body(exp) == sympy.exp(kit.a(0))
    assert kit.named(product, names={exp.out: "e"}) == 3 * kit.sym("e") * (kit.sym("e") + 1)


def test_kept_values_stay_kernels_of_their_own():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (4,))
        u = ops.unary("exp", x)
        g.result = ops.sum(u * 2)
    fuse.fuse_elementwise(g, keep=[u, g.result])
    assert [kit.body(n) for n in kit.kernels(g)] == [sympy.exp(kit.a(0)), 2 * kit.a(0)]


def test_broadcasts_into_a_kernel_are_absorbed():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (4, 3))
        b = kit.param(g, "b", (3,))
        wide = ops.broadcast_to(b, (4, 3))
        g.result = ops.sum(x * wide)
    fuse.fuse_elementwise(g, keep=[g.result])
    (product,) = kit.kernels(g)
    # the kernel reads b itself: NumPy broadcasting does the repeat for free
    assert product.inputs == [x, b] and kit.named(product) == x_ * b_
    assert kit.users(g, wide) == []  # the broadcast is dead now (dead-code elimination drops it)


def test_a_smaller_producer_is_inlined_only_when_it_is_all_ones():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (4, 3))
        b = kit.param(g, "b", (3,))
        c = kit.param(g, "c", ())
        row = ops.unary("exp", b)    # (3,): not inlined, it would be computed again for every row of x
        one = ops.unary("exp", c)    # (): inlined, a number per element is no repeated work
        g.result = ops.sum(x * row * one)
    fuse.fuse_elementwise(g, keep=[g.result])
    small, big = kit.kernels(g)
    assert small.inputs == [b] and small.attrs["shape"] == (3,)
    assert kit.named(big, names={row: "r"}) == x_ * kit.sym("r") * sympy.exp(c_)
    assert set(big.inputs) == {x, row, c}


def test_a_fused_body_keeps_the_dtype_it_was_declared_with():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (4,), np.float32)
        # a NumPy float64 scalar widens float32 (NEP 50); the + 1.0 that follows is a weak Python float
        v = x * np.float64(2.0) + 1.0
        g.result = ops.sum(v)
    assert v.dtype == np.float64
    fuse.fuse_elementwise(g, keep=[g.result])
    (node,) = kit.kernels(g)
    # the merged body 2*x + 1 alone reads as float32: the kernel must state float64
    assert kit.named(node) == 2 * x_ + 1
    assert node.out.dtype == np.float64 and node.attrs.get("dtype") == np.float64


def test_finalize_computes_a_shared_subexpression_once():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (4,))
        node = elementwise.kernel([x], (sympy.exp(kit.a(0)) / (1 + sympy.exp(kit.a(0))),), (4,))[0].node
        g.result = ops.sum(node.out)
    fuse.finalize_kernels(g)
    program, outs = node.attrs["program"], node.attrs["outs"]
    # exp(x) is a temp of the kernel's program, and the output reads the temp
    (temp, value), = program
    assert value == sympy.exp(kit.a(0))
    assert outs == (temp / (temp + 1),)
    assert kit.body(node) == sympy.exp(kit.a(0)) / (1 + sympy.exp(kit.a(0)))


def test_a_fused_kernel_remembers_the_lines_fused_into_it():
    g = kit.graph()
    line = [errors.Loc("model.py", k, f"line {k}") for k in (1, 2, 3)]
    with kit.building(g):
        x = kit.param(g, "x", (4,))
        with ir.at(line[0]):
            a = x * 2
        with ir.at(line[1]):
            b = ops.unary("sin", a)
        with ir.at(line[2]):
            g.result = ops.sum(b + 1.0)
    fuse.fuse_elementwise(g, keep=[g.result])
    (only,) = kit.kernels(g)
    # the consumer's line first, then the producers' as they were inlined
    assert only.loc == line[2] and g.fused[only] == (line[2], line[1], line[0])


def test_a_long_chain_is_cut_into_bounded_kernels():
    """A static loop accumulating hundreds of taps fused into one kernel cost time quadratic
    in its length (each merge rewrites the whole body); kernels stop at MAX_FUSED operations
    and MAX_INPUTS inputs, and the cut chain computes the same value."""
    g = kit.graph()
    with kit.building(g):
        xs = [kit.param(g, f"x{i}", (5,)) for i in range(50)]
        acc = xs[0] * 1.5
        for i in range(1, 200):
            acc = acc + xs[i % 50] * float(i)
        g.result = ops.sum(acc)
    inputs = kit.random_inputs(g)
    before = kit.evaluate(g, inputs)[g.result]
    fuse.fuse_elementwise(g, keep=[g.result], across_names=True)
    kernels = kit.kernels(g)
    assert len(kernels) > 1
    for k in kernels:
        assert sum(sympy.count_ops(b) for b in kit.bodies(k)) <= 2 * fuse.MAX_FUSED
        assert len(set(k.inputs)) <= fuse.MAX_INPUTS + 1
    assert np.allclose(kit.evaluate(g, inputs)[g.result], before)
