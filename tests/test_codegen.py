"""The generated code as a product: structure of the MLP gradient, names, determinism, no warnings."""
import re
import subprocess
import sys
import warnings

import numpy as np

import symbackprop as sb
import models


def mlp_args(batch=128, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(784, 256)) * 0.05, np.zeros(256), rng.normal(size=(256, 10)) * 0.05, np.zeros(10),
            rng.normal(size=(batch, 784)), np.eye(10)[rng.integers(0, 10, batch)]]


def _mlp_source():
    f = sb.value_and_grad(models.mlp, wrt=("W1", "b1", "W2", "b2"))
    f(*mlp_args())
    return f.source


def _calls(source, name):
    return len(re.findall(rf"np\.{name}\(", source))


def test_mlp_gradient_has_five_matrix_products():
    body = _mlp_source().split("def value_and_grad", 1)[1]
    assert body.count("np.dot(") == 5, body


def test_mlp_gradient_recomputes_no_transcendental(tmp_path):
    f = sb.value_and_grad(models.mlp, wrt=("W1", "b1", "W2", "b2"))
    args = mlp_args()
    f.export_forward_source = None
    f(*args)
    exported = tmp_path / "mlp.py"
    f.export(exported, *args)
    forward = exported.read_text().split("def value_and_grad", 1)[0]
    both = f.source.split("def value_and_grad", 1)[1]
    for fn in ("exp", "tanh", "log"):
        assert _calls(both, fn) <= _calls(forward, fn), fn
    assert _calls(both, "exp") == 1 and _calls(both, "tanh") == 1


def test_logits_gradient_is_softmax_minus_one_hot():
    source = _mlp_source()
    backward = source.split("# backward", 1)[1]
    # p = e / s is the softmax of the forward pass, and d_z subtracts it from the scaled one-hot residual
    assert re.search(r"\bp = e/s\b", backward), backward
    assert re.search(r"d_logp = -y/128", backward), backward
    assert re.search(r"d_z = d_logp - p\*", backward), backward
    assert "np.log" not in backward and "np.exp" not in backward


def test_tanh_derivative_reuses_the_forward_output():
    backward = _mlp_source().split("# backward", 1)[1]
    assert "(1 - h**2)" in backward


def test_sigmoid_derivative_reuses_the_forward_output():
    f = sb.value_and_grad(models.sigmoid_loss)
    f(np.zeros(3), np.ones((4, 3)), np.ones(4))
    backward = f.source.split("# backward", 1)[1]
    assert "np.exp" not in backward
    assert re.search(r"s\*\(1 - s\)|\(1 - s\)\*s|\(-s \+ 1\)\*s", backward) or "(1 - s)" in backward, backward


def test_names_come_from_the_model_and_lines_are_commented():
    source = _mlp_source()
    for name in ("h = np.tanh", "logits = ", "d_h = ", "d_W1 = ", "d_b1 = ", "d_W2 = ", "d_b2 = "):
        assert name in source, name
    statements = [l for l in source.splitlines() if re.match(r"\s+\w+ = ", l)]
    assert statements and all(re.search(r"# models\.py:\d+$", l) for l in statements)


def test_same_model_gives_the_same_bytes_in_a_fresh_process():
    script = ("import sys; sys.path.insert(0, 'tests'); import numpy as np, symbackprop as sb, models, test_codegen;"
              "print(test_codegen._mlp_source())")
    outputs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
               for _ in range(2)}
    outputs.add(_mlp_source() + "\n")
    assert len(outputs) == 1


def test_no_runtime_warning_leaks_from_generated_code():
    x = np.array([-1.0, 0.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for model in (models.where_safe_sqrt, models.where_safe_log, models.where_safe_division):
            value, g = sb.value_and_grad(model)(x)
            assert np.all(np.isfinite(g)) and np.isfinite(value)


def test_nan_and_inf_inputs_propagate_like_numpy():
    f = sb.value_and_grad(models.unary_all)
    with np.errstate(all="ignore"):
        value, g = f(np.array([[np.nan, np.inf, 1.0]]))
    assert np.isnan(value) and np.isnan(g[0, 0])


def test_scalar_models_use_math_and_fall_back_to_numpy_semantics():
    f = sb.value_and_grad(models.math_scalar, wrt=(0, 1, 2))
    value, grads = f(0.3, -0.2, 1.5)
    assert "math.tanh" in f.source and type(value) is float and all(type(g) is float for g in grads)
    g = sb.grad(models.where_safe_log)
    # math.log(-1.0) raises; the NumPy fallback gives NumPy's answer instead of an exception
    assert g(-1.0) == 1.0 and g(4.0) == 0.25


def _stacked_args(depth, width, batch):
    rng = np.random.default_rng(7)
    return [rng.normal(size=(depth, width, width)) * 0.5, rng.normal(size=(depth, width)),
            rng.normal(size=(batch, width))]


def test_stacked_layers_batch_their_weight_gradients():
    """for i in range(n): h = tanh(h @ Ws[i] + bs[i]): layer outputs go into one stack, every layer's
    1 - h**2 is one call, and all dW and db are one batched product and one sum."""
    f = sb.value_and_grad(models.loop_stacked, wrt=(0, 1))
    args = _stacked_args(3, 4, 2)
    value, (d_Ws, d_bs) = f(*args)
    forward, backward = f.source.split("# backward", 1)
    assert "hs = np.empty((4, 2, 4), dtype=np.float64)" in forward and "hs[0] = x" in forward
    assert forward.count("np.tanh(") == 3 and forward.count("out=hs[") == 3
    assert "d_ts = 1 - hs[1:]**2" in backward and backward.count("**2") == 1
    assert backward.count("out=d_ts[") == 3  # each layer multiplies its d_h into its slot
    assert "d_Ws = np.matmul(hs[:3].transpose(0, 2, 1), d_ts)" in backward
    assert "d_bs = np.ones(2) @ d_ts" in backward and "+=" not in backward
    reference = sb.value_and_grad(models.loop_stacked, wrt=(0, 1), backend="llvm")(*args)[1]
    np.testing.assert_allclose(d_Ws, reference[0], rtol=1e-12)
    np.testing.assert_allclose(d_bs, reference[1], rtol=1e-12)
    again = f(*args)[1]  # stacks are made per call: a second call neither reuses nor changes the first's
    assert again[0] is not d_Ws
    np.testing.assert_array_equal(again[0], d_Ws)


def test_stacked_layer_gradients_fall_back_to_their_slices():
    """Layer inputs that are views (h[:, ::-1]) cannot be written into a stack: each dW goes into d_Ws[i]."""
    f = sb.value_and_grad(models.loop_stacked_reversed, wrt=(0, 1))
    args = _stacked_args(3, 4, 2)
    value, (d_Ws, d_bs) = f(*args)
    backward = f.source.split("# backward", 1)[1]
    assert backward.count("out=d_Ws[") == 3 and "d_Ws = np.empty((3, 4, 4)" in backward
    assert "d_bs = np.ones(2) @ d_ts" in backward  # the bias gradients still batch
    reference = sb.value_and_grad(models.loop_stacked_reversed, wrt=(0, 1), backend="llvm")(*args)[1]
    np.testing.assert_allclose(d_Ws, reference[0], rtol=1e-12)
    np.testing.assert_allclose(d_bs, reference[1], rtol=1e-12)


def test_stacked_layer_gradients_are_those_of_the_unbatched_code():
    """16 layers of width 32 (the W5 benchmark): the batched code against the layer-by-layer LLVM code."""
    args = _stacked_args(16, 32, 16)
    args[0] /= 4
    ours = sb.value_and_grad(models.loop_stacked, wrt=(0, 1, 2))(*args)
    reference = sb.value_and_grad(models.loop_stacked, wrt=(0, 1, 2), backend="llvm")(*args)
    np.testing.assert_allclose(ours[0], reference[0], rtol=1e-13)
    for a, b in zip(ours[1], reference[1]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-15)


def test_per_row_residuals_stay_per_row():
    """Layernorm's backward reads 1/std, one number per row: it is kept as a (rows, 1) array, never
    written out at the full (rows, width) shape with np.full."""
    f = sb.value_and_grad(models.layernorm, wrt=(0, 1, 2))
    rng = np.random.default_rng(0)
    args = [rng.normal(size=(8, 16)), rng.normal(size=16), rng.normal(size=16)]
    f(*args)
    assert "np.full(" not in f.source
    module = {}
    exec(compile(f.source, "generated", "exec"), module)  # the text itself, run without symbackprop
    ours = module["value_and_grad"](*args)[1]
    reference = sb.value_and_grad(models.layernorm, wrt=(0, 1, 2), backend="llvm")(*args)[1]
    for a, b in zip(ours, reference):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_tanh_gelu_is_computed_with_one_exp():
    """0.5*u*(1 + tanh(y)) is u*sigmoid(2y): one exp, no tanh, and the derivative reuses the sigmoid."""
    f = sb.value_and_grad(models.gelu_tanh, wrt=(0, 1))
    rng = np.random.default_rng(1)
    args = [rng.normal(size=(4, 3)), rng.normal(size=(3, 5))]
    value, grads = f(*args)
    assert "np.tanh" not in f.source and _calls(f.source, "exp") == 1
    np.testing.assert_allclose(value, models.gelu_tanh(*args), rtol=1e-13)
    far = [np.array([[40.0, -40.0, 0.5]]), np.array([[30.0, -30.0], [20.0, 20.0], [1.0, 1.0]])]  # u = 400.5, -1999.5
    value, (d_x, d_W) = f(*far)
    assert np.isfinite(value) and np.all(np.isfinite(d_x)) and np.all(np.isfinite(d_W))
    np.testing.assert_allclose(value, models.gelu_tanh(*far), rtol=1e-13)
    u = far[0] @ far[1]  # far from 0, gelu(u) is u or 0: its derivative 1 or 0
    np.testing.assert_allclose(d_W, far[0].T @ (u > 0), rtol=1e-13)
