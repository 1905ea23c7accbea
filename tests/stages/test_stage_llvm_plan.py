"""The LLVM plan: which nodes share one loop, which loops are outlined, which values get buffers.

Decisions of backends/llvm/lower.py and rowpass.py, read from the Lowering before
it runs and from the LLVM IR text it writes (function definitions, calls to
malloc and free). No JIT compilation and no BLAS: only the plan is checked.
"""
import re

import numpy as np

# the package, in one place
from symbackprop import backends
from symbackprop.backends.llvm import lower
from symbackprop.program import Program
from symbackprop.primitives import elementwise, linalg, ops

import stagekit as kit


def lowering(g, grads=()):
    """A Lowering of `g` returning its result and `grads` (what a specialisation hands it), without BLAS."""
    program = Program(None, (), backends.get("llvm"), graph=g, grads=list(grads))
    return lower.Lowering(program, "probe", False)


def outlined(text):
    """{name: times called} of the loop functions the lowering outlined."""
    names = re.findall(r'define internal void @"(probe_\w+)"\(', text)
    return {name: calls(text, name) for name in names}


def calls(text, name):
    return len(re.findall(rf'call \w+\*? @"{name}"', text))


# ---- transposes and reductions -------------------------------------------------------------------

def test_a_transpose_read_only_by_products_is_a_blas_flag():
    g = kit.graph()
    with kit.building(g):
        A = kit.param(g, "A", (4, 3))
        B = kit.param(g, "B", (4, 2))
        C = kit.param(g, "C", (3, 3))
        flag = A.T                       # only A.T @ B reads it
        both = C.T                       # read by a product and by a kernel: it must exist in memory
        g.result = ops.sum(flag @ B) + ops.sum(both @ C) + ops.sum(both * 2)
    assert lower._virtual_transposes(g) == {flag}


def test_a_kernel_output_only_a_reduction_reads_is_accumulated_in_its_loop():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (6, 5))
        alone = ops.unary("exp", x)      # read by one sum: accumulated, never stored
        shared = ops.unary("sin", x)     # read by a sum and a product
        returned = ops.unary("cos", x)   # a result: stored for the caller
        product = shared * x             # read by one sum, like `alone`
        s1, s2, s3 = ops.sum(alone, axis=1), ops.sum(shared), ops.sum(product)
        g.result = ops.sum(s1) + s2 + s3
        s4 = ops.sum(returned)
    fused = lower._fused_reductions(g, {g.result, returned, s4})
    assert fused == {alone: s1.node, product: s3.node}


# ---- the row pass --------------------------------------------------------------------------------

def regression(n=100, d=8, read_z_elsewhere=False):
    """Squared error of X @ w + b against y, with d_w = X.T @ r written as reverse mode gives it."""
    g = kit.graph()
    with kit.building(g):
        X = kit.param(g, "X", (n, d))
        w = kit.param(g, "w", (d,))
        b = kit.param(g, "b", ())
        y = kit.param(g, "y", (n,))
        z = X @ w
        (err,) = elementwise.kernel([z, b, y], (kit.a(0) + kit.a(1) - kit.a(2),), (n,))
        (sq,) = elementwise.kernel([err], (kit.a(0) ** 2 / n,), (n,))
        loss = ops.sum(sq)
        (r,) = elementwise.kernel([err], (2 * kit.a(0) / n,), (n,))
        d_b = ops.sum(r)
        d_w = X.T @ r
        g.result = loss + ops.sum(z) if read_z_elsewhere else loss
    return g, dict(X=X, w=w, y=y, b=b, z=z, err=err, sq=sq, r=r, loss=loss, d_b=d_b, d_w=d_w)


def test_regression_runs_its_chain_in_one_pass_over_the_rows():
    g, v = regression()
    L = lowering(g, [v["d_w"], v["d_b"]])
    (rp,) = L.row_passes
    assert rp.first is v["z"].node and rp.last is v["d_w"].node
    # the chain between the products runs per row, and its sums (loss, d_b) accumulate in the loop
    assert rp.kernels == [v["err"].node, v["sq"].node, v["r"].node]
    assert rp.sums == {v["sq"]: v["loss"].node, v["r"]: v["d_b"].node}
    assert {v["X"], v["w"], v["y"], v["b"]} <= rp.reads
    assert rp.stored == set()  # no chain value is read outside the loop: none gets a buffer
    assert rp.position == g.nodes.index(v["d_w"].node)


def test_a_chain_value_read_after_the_loop_is_stored():
    g, v = regression()
    with kit.building(g):
        late = ops.amax(v["err"])        # a max: no row kernel, no sum to a number of the loop's kind
        g.result = v["loss"] + late
    (rp,) = lowering(g, [v["d_w"]]).row_passes
    assert rp.stored == {v["err"]}
    assert late.node not in rp.nodes


def test_no_row_pass_when_z_itself_is_read_elsewhere():
    g, v = regression(read_z_elsewhere=True)
    assert lowering(g, [v["d_w"]]).row_passes == []


# ---- outlined loops and buffers ------------------------------------------------------------------

def two_layers():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (8, 8))
        y = kit.param(g, "y", (8, 8))
        c = kit.param(g, "c", (2,))
        u = ops.unary("tanh", x)         # 64 elements: a malloc'ed temporary
        v = ops.unary("tanh", y)         # the same loop on another input
        w = u * v                        # a gradient: computed straight into the caller's buffer
        g.result = ops.sum(w) + ops.sum(ops.unary("exp", c))
    return g, u, v, w


def test_equal_loops_share_one_outlined_function():
    g, u, v, w = two_layers()
    text = lowering(g, [w]).run()
    # tanh of an (8, 8) array, twice: one function called twice; the product and exp(c) are loops of their own
    functions = outlined(text)
    assert all(name.startswith("probe_kernel") for name in functions)
    assert sorted(functions.values()) == [1, 1, 2]


def test_temporaries_are_malloced_and_freed_results_written_in_place():
    g, u, v, w = two_layers()
    L = lowering(g, [w])
    # the loss and the gradient are computed into the caller's memory
    assert set(L.direct) == {g.result, w}
    text = L.run()
    # u and v (64 float64, 512 bytes each) are the only temporaries over 16 elements; exp(c) is summed in
    # its loop and never stored; 0-d values live in allocas
    assert re.findall(r'call ptr @"malloc"\(i64 (\d+)\)', text) == ["512", "512"]
    assert calls(text, "free") == 2
    assert calls(text, "memcpy") == 0  # nothing is copied out: the results were written where they belong


def test_a_reshaped_result_is_not_written_in_place():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (4, 3))
        flat = ops.reshape(ops.unary("exp", x), (12,))   # a reshape is its input's buffer
        g.result = ops.sum(flat)
    L = lowering(g, [flat])
    assert flat not in L.direct and g.result in L.direct
    assert calls(L.run(), "memcpy") == 1               # so it is copied into the caller's buffer
