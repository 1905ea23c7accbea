"""Narrowing: a kernel output whose body reads only smaller inputs is computed at its own shape.

The rule (passes/narrow.py): in a kernel of several outputs, an output whose
inputs broadcast to a smaller shape than the kernel's becomes a kernel of that
shape, followed by a broadcast to the old shape, which is what its readers now
read. Single-output kernels and kept values are left alone.
"""
import numpy as np
import sympy

# the package, in one place
from symbackprop.passes import narrow
from symbackprop.primitives import elementwise, ops, shape

import stagekit as kit

x_, s_ = kit.sym("x", "s")


def layernorm_like(keep_rstd=False):
    """A kernel over x (4, 3) and s (4, 1) computing x/s and the per-row residual 1/s at (4, 3)."""
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (4, 3))
        s = kit.param(g, "s", (4, 1))
        y, rstd = elementwise.kernel([x, s], (kit.a(0) / kit.a(1), 1 / kit.a(1)), (4, 3))
        rstd.name = "rstd"
        reader = ops.sum(rstd * x)
        g.result = ops.sum(y) + reader
    return g, x, s, y, rstd, reader


def test_a_per_row_output_is_split_off_at_its_row_shape():
    g, x, s, y, rstd, reader = layernorm_like()
    inputs = kit.random_inputs(g, positive=g.params)
    before = kit.evaluate(g, inputs)[g.result]
    node = y.node
    narrow.narrow_kernel_outputs(g, keep=[g.result])
    # the original kernel computes x/s only
    assert node.outputs == [y] and kit.named(node) == x_ / s_
    # 1/s reads only s (4, 1): a kernel of that shape, then a broadcast back to (4, 3)
    small = next(n for n in kit.kernels(g) if n.inputs == [s])
    assert small.attrs["shape"] == (4, 1) and small.out.shape == (4, 1)
    assert kit.named(small) == 1 / s_
    assert small.out.name == "rstd" and small.out.dtype == np.float64
    (wide,) = kit.users(g, small.out)
    assert wide.prim is shape.BroadcastTo and wide.out.shape == (4, 3)
    # the reader of the old (4, 3) residual reads the broadcast now; nothing reads the old value
    product = reader.node.inputs[0].node  # rstd * x
    assert wide.out in product.inputs and rstd not in product.inputs
    assert kit.users(g, rstd) == []
    # the new nodes come before their readers
    order = {n: i for i, n in enumerate(g.nodes)}
    assert order[small] < order[wide] < min(order[n] for n in kit.users(g, wide.out))
    assert np.allclose(kit.evaluate(g, inputs)[g.result], before)


def test_a_kept_output_is_not_narrowed():
    g, x, s, y, rstd, reader = layernorm_like()
    narrow.narrow_kernel_outputs(g, keep=[g.result, rstd])
    assert y.node.outputs == [y, rstd]
    assert not any(n.prim is shape.BroadcastTo for n in g.nodes)


def test_an_output_at_full_shape_or_alone_is_not_narrowed():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (4, 3))
        s = kit.param(g, "s", (4, 1))
        both = elementwise.kernel([x, s], (kit.a(0) / kit.a(1), kit.a(0) * kit.a(1)), (4, 3))
        alone = elementwise.kernel([s], (sympy.exp(kit.a(0)),), (4, 3))[0]  # single output: left as it is
        g.result = ops.sum(both[0] + both[1] + alone)
    count = len(g.nodes)
    narrow.narrow_kernel_outputs(g, keep=[g.result])
    assert len(g.nodes) == count
    assert both[0].node.outputs == list(both) and alone.shape == (4, 3)
