"""Parameter trees: a parameter may be nested tuples, lists and dicts of arrays and floats; its gradient has
the same structure; train steps update its leaves in place; exports flatten it in the documented order."""
import ctypes
import importlib.util
import re

import numpy as np
import pytest

import symbackprop as sb
from gradcheck import numerical_gradient, RTOL, ATOL


def mlp(params, x, y):
    h = x
    for W, b in params["layers"]:
        h = np.tanh(h @ W + b)
    return np.mean((h - y) ** 2)


def mlp_flat(W0, b0, W1, b1, W2, b2, x, y):
    h = np.tanh(x @ W0 + b0)
    h = np.tanh(h @ W1 + b1)
    h = np.tanh(h @ W2 + b2)
    return np.mean((h - y) ** 2)


def mixed(p, x):
    """Indexing, unpacking, dict iteration, len, a float leaf and a static string leaf in one tree."""
    (a, b), c = p["pair"], p["c"]
    total = 0.0
    for k in p["extra"]:
        total = total + np.sum(p["extra"][k] ** 2)
    for name, v in p["extra"].items():
        total = total + np.sum(v) * len(name)
    act = np.tanh if p["act"] == "tanh" else np.sin
    return np.sum(act(x @ a) * b) * p["scale"] + total + c * len(p["extra"])


def layers(rng, sizes=(3, 5, 4, 2)):
    return {"layers": [(rng.normal(size=(m, n)), rng.normal(size=n)) for m, n in zip(sizes[:-1], sizes[1:])]}


def leaves_of(tree):
    """The tree's dynamic leaves in the documented order (tuples and lists by position, dicts by insertion)."""
    if isinstance(tree, dict):
        return [x for v in tree.values() for x in leaves_of(v)]
    if isinstance(tree, (tuple, list)):
        return [x for v in tree for x in leaves_of(v)]
    return [] if isinstance(tree, (str, bool, type(None))) else [tree]


def with_leaves(tree, leaves):
    it = iter(leaves)

    def visit(t):
        if isinstance(t, dict):
            return {k: visit(v) for k, v in t.items()}
        if isinstance(t, (tuple, list)):
            return type(t)(visit(v) for v in t)
        return t if isinstance(t, (str, bool, type(None))) else next(it)
    return visit(tree)


def assert_tree_gradient(f, tree, rest, got):
    """`got` (a tree) against central differences of f in each leaf of `tree` (f's first argument)."""
    leaves = leaves_of(tree)
    flat = lambda *ls: f(with_leaves(tree, ls[:len(leaves)]), *ls[len(leaves):])  # noqa: E731
    got_leaves = leaves_of(got)
    assert len(got_leaves) == len(leaves)
    for k, g in enumerate(got_leaves):
        expected, probe = numerical_gradient(flat, list(leaves) + list(rest), k)
        np.testing.assert_allclose(np.asarray(g, dtype=np.float64).reshape(-1)[probe], expected.reshape(-1)[probe],
                                   rtol=RTOL, atol=ATOL, err_msg=f"leaf {k}")
        assert np.shape(g) == np.shape(leaves[k])
        assert type(g) is float if isinstance(leaves[k], float) else g.dtype == leaves[k].dtype


def test_mlp_tree_gradient_has_its_structure(backend):
    rng = np.random.default_rng(0)
    params, x, y = layers(rng), rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    value, g = sb.value_and_grad(mlp, backend=backend)(params, x, y)
    assert value == pytest.approx(mlp(params, x, y), rel=1e-12)
    assert isinstance(g, dict) and list(g) == ["layers"] and isinstance(g["layers"], list)
    assert all(isinstance(t, tuple) and len(t) == 2 for t in g["layers"])
    assert_tree_gradient(mlp, params, (x, y), g)


def test_tree_equals_flat_arguments(backend):
    rng = np.random.default_rng(1)
    params, x, y = layers(rng), rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    flat = [a for W, b in params["layers"] for a in (W, b)]
    vt, gt = sb.value_and_grad(mlp, backend=backend)(params, x, y)
    vf, gf = sb.value_and_grad(mlp_flat, wrt=tuple(range(6)), backend=backend)(*flat, x, y)
    assert vt == vf
    for a, b in zip(leaves_of(gt), gf):
        np.testing.assert_array_equal(a, b)


def test_indexing_unpacking_iteration_floats_and_static_leaves(backend):
    rng = np.random.default_rng(2)
    p = {"pair": (rng.normal(size=(3, 4)), rng.normal(size=4)), "c": 0.5, "act": "tanh", "scale": 1.5,
         "extra": {"u": rng.normal(size=3), "vw": rng.normal(size=(2, 2))}}
    x = rng.normal(size=(5, 3))
    g = sb.grad(mixed, backend=backend)(p, x)
    assert g["act"] is None and isinstance(g["scale"], float) and isinstance(g["c"], float)
    assert_tree_gradient(mixed, p, (x,), g)
    p["act"] = "sin"  # a static leaf steers control flow: its value is part of the signature
    g2 = sb.grad(mixed, backend=backend)(p, x)
    assert_tree_gradient(mixed, p, (x,), g2)


def test_wrt_names_a_tree_beside_an_array(backend):
    rng = np.random.default_rng(3)
    params, x, y = layers(rng), rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    gp, gx = sb.grad(mlp, wrt=("params", "x"), backend=backend)(params, x, y)
    assert_tree_gradient(mlp, params, (x, y), gp)
    expected, probe = numerical_gradient(mlp, [params, x, y], 1)
    np.testing.assert_allclose(gx.reshape(-1)[probe], expected.reshape(-1)[probe], rtol=RTOL, atol=ATOL)
    gx_only = sb.grad(mlp, wrt="x", backend=backend)(params, x, y)  # a tree not differentiated
    np.testing.assert_allclose(gx_only, gx, rtol=1e-13)


def test_tuple_and_list_parameters(backend):
    def f(wb, x):
        W, b = wb
        return np.sum(np.tanh(x @ W + b[0]) * b[1])
    rng = np.random.default_rng(4)
    wb = (rng.normal(size=(3, 2)), [rng.normal(size=2), rng.normal(size=2)])
    x = rng.normal(size=(4, 3))
    g = sb.grad(f, backend=backend)(wb, x)
    assert isinstance(g, tuple) and isinstance(g[1], list)
    assert_tree_gradient(f, wb, (x,), g)


def test_cache_keys_on_structure_shapes_and_dtypes():
    rng = np.random.default_rng(5)
    g = sb.grad(mlp)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    g(layers(rng), x, y)
    g(layers(rng), x, y)                                   # new arrays, same structure and shapes
    assert g.compilations == 1
    g(layers(rng, (3, 7, 2)), x, y)                        # another structure
    assert g.compilations == 2
    g(layers(rng, (3, 6, 4, 2)), x, y)                     # same structure, other shapes
    assert g.compilations == 3
    p = layers(rng)
    p["layers"] = [tuple(a.astype(np.float32) for a in t) for t in p["layers"]]
    gp = g(p, x.astype(np.float32), y.astype(np.float32))  # other dtypes
    assert g.compilations == 4 and gp["layers"][0][0].dtype == np.float32
    g(layers(rng), x, y)
    assert g.compilations == 4


def test_generated_code_names_leaves_by_path_and_has_the_flat_products():
    rng = np.random.default_rng(6)
    params, x, y = layers(rng), rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    tree = sb.value_and_grad(mlp)
    tree(params, x, y)
    flat = sb.value_and_grad(mlp_flat, wrt=tuple(range(6)))
    flat(*[a for t in params["layers"] for a in t], x, y)
    assert "def value_and_grad(params_layers_0_0, params_layers_0_1, params_layers_1_0" in tree.source
    products = lambda text: len(re.findall(r"np\.dot\(|np\.matmul\(| @ |np\.einsum\(", text))  # noqa: E731
    assert products(tree.source) == products(flat.source) > 0
    llvm_tree, llvm_flat = sb.value_and_grad(mlp, backend="llvm"), sb.value_and_grad(mlp_flat, wrt=tuple(range(6)),
                                                                                      backend="llvm")
    llvm_tree(params, x, y)
    llvm_flat(*[a for t in params["layers"] for a in t], x, y)
    calls = lambda text: len(re.findall(r"call [^\n]*@\"?matmul_", text))  # noqa: E731
    assert calls(llvm_tree.source) == calls(llvm_flat.source) > 0


def test_train_step_updates_tree_leaves_in_place(backend):
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    params = layers(rng)
    flat = [a.copy() for t in params["layers"] for a in t]
    originals = leaves_of(params)
    step = sb.train_step(mlp, sb.optim.Adam(lr=1e-2), backend=backend)
    step_flat = sb.train_step(mlp_flat, sb.optim.Adam(lr=1e-2), wrt=tuple(range(6)), backend=backend)
    for _ in range(3):
        assert step(params, x, y) == step_flat(*flat, x, y)
    for a, b, c in zip(leaves_of(params), flat, originals):
        assert a is c
        np.testing.assert_array_equal(a, b)
    assert step.compilations == 1


def test_train_step_refuses_a_float_leaf():
    rng = np.random.default_rng(8)
    step = sb.train_step(mixed, sb.optim.SGD(lr=0.1))
    p = {"pair": (rng.normal(size=(3, 4)), rng.normal(size=4)), "c": 0.5, "act": "tanh", "scale": 1.5,
         "extra": {"u": rng.normal(size=3)}}
    with pytest.raises(TypeError, match="p_c"):
        step(p, rng.normal(size=(5, 3)))


def test_a_tree_of_something_else_is_a_type_error_naming_the_path():
    with pytest.raises(TypeError, match=r"`params` holds a object at `params_layers_0_1`"):
        sb.grad(mlp)({"layers": [(np.ones((3, 2)), object())]}, np.ones((4, 3)), np.ones((4, 2)))


def test_export_py_takes_the_tree_and_so_header_names_leaves(tmp_path):
    rng = np.random.default_rng(9)
    params, x, y = layers(rng), rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    g = sb.value_and_grad(mlp, wrt=("params", "x"))
    value, (gp, gx) = g(params, x, y)
    path = g.export(tmp_path / "mlp_tree.py")
    spec = importlib.util.spec_from_file_location("mlp_tree", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    v2, (gp2, gx2) = module.value_and_grad(params, x, y)
    assert v2 == value and module.forward(params, x, y) == pytest.approx(value, rel=1e-14)
    for a, b in zip(leaves_of(gp2) + [gx2], leaves_of(gp) + [gx]):
        np.testing.assert_array_equal(a, b)
    so = g.export(tmp_path / "mlp_tree.so")
    header = (tmp_path / "mlp_tree.h").read_text()
    names = re.findall(r"const double\* (\w+)", header)
    assert names == ["params_layers_0_0", "params_layers_0_1", "params_layers_1_0", "params_layers_1_1",
                     "params_layers_2_0", "params_layers_2_1", "x", "y"]
    assert "double* d_params_layers_2_1" in header and "double* d_x" in header
    lib = ctypes.CDLL(str(so))
    leaves = [np.ascontiguousarray(a) for a in leaves_of(params)] + [x, y]
    out = ctypes.c_double()
    grads = [np.zeros_like(a) for a in leaves[:-1]]
    ptr = lambda a: a.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
    assert getattr(lib, "mlp_value_and_grad")(*map(ptr, leaves), ctypes.byref(out), *map(ptr, grads)) == 0
    assert out.value == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(grads[0], gp["layers"][0][0], rtol=1e-12, atol=1e-14)


def test_export_py_of_a_tree_with_a_string_leaf_gives_none_there(tmp_path):
    # a str has an `.index` method: the export once took the string for a leaf's slot
    rng = np.random.default_rng(4)
    p = {"pair": (rng.normal(size=(3, 4)), rng.normal(size=4)), "c": 0.5, "act": "tanh", "scale": 1.5,
         "extra": {"u": rng.normal(size=3), "vw": rng.normal(size=(2, 2))}}
    x = rng.normal(size=(5, 3))
    g = sb.value_and_grad(mixed)
    value, grad = g(p, x)
    path = g.export(tmp_path / "mixed_tree.py")
    spec = importlib.util.spec_from_file_location("mixed_tree", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    v2, g2 = module.value_and_grad(p, x)
    assert v2 == value and g2["act"] is None and set(g2) == set(grad)
    for a, b in zip(leaves_of(g2["pair"]) + [g2["c"], g2["extra"]["vw"]],
                    leaves_of(grad["pair"]) + [grad["c"], grad["extra"]["vw"]]):
        np.testing.assert_array_equal(a, b)


def test_a_differentiated_tuple_of_floats_is_a_tree_a_list_of_numbers_still_an_array_error(backend):
    def f(ab, x):
        a, b = ab
        return np.sum(np.sin(a * x) + b * x)
    x = np.linspace(0.0, 1.0, 5)
    g = sb.grad(f, backend=backend)((0.7, 1.5), x)
    assert isinstance(g, tuple) and all(type(t) is float for t in g)
    assert_tree_gradient(f, (0.7, 1.5), (x,), g)
    with pytest.raises(TypeError, match="np.asarray"):
        sb.grad(f)([0.7, 1.5], x)


def test_check_grad_checks_each_leaf_of_a_tree(backend):
    rng = np.random.default_rng(10)
    params, x, y = layers(rng), rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    report = sb.check_grad(mlp, params, x, y, backend=backend)
    assert report and [c.name for c in report.parameters] == [f"params['layers'][{i}][{j}]" for i in range(3)
                                                                   for j in (0, 1)]


def test_a_tree_used_as_an_array_is_a_compile_error_at_the_line():
    def f(W, x):
        return np.sum(x @ W)
    with pytest.raises(sb.CompileError, match=r"test_trees.py:\d+: `@` cannot take a dict"):
        sb.grad(f)({"W": np.ones((2, 2))}, np.ones((3, 2)))


def test_threads_share_one_compilation_of_a_tree_structure():
    import threading
    rng = np.random.default_rng(11)
    params, x, y = layers(rng), rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    g = sb.grad(mlp)
    barrier, results = threading.Barrier(6), [None] * 6

    def work(i):
        barrier.wait()
        results[i] = g(params, x, y)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert g.compilations == 1
    for r in results[1:]:
        for a, b in zip(leaves_of(r), leaves_of(results[0])):
            np.testing.assert_array_equal(a, b)
