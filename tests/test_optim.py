"""sb.optim and sb.train_step: each update rule against the formulas, in place, float32, export."""
import json
import subprocess
import sys

import numpy as np
import pytest

import symbackprop as sb
import models

# ---- an independent reference: the model's gradient by hand, the optimizers from their formulas ----


def tanh_regression(W, b, x, y):
    h = np.tanh(x @ W + b)
    return 0.5 * np.sum((h - y) ** 2)


def tanh_regression_by_hand(W, b, x, y):
    h = np.tanh(x @ W + b)
    r = h - y
    dz = r * (1 - h**2)
    return 0.5 * np.sum(r**2), [x.T @ dz, dz.sum(axis=0)]


def sgd(p, g, s, t, lr, momentum=0.0, nesterov=False):
    if momentum == 0:
        return p - lr * g
    s["v"] = momentum * s.get("v", 0.0) + g
    return p - lr * (g + momentum * s["v"]) if nesterov else p - lr * s["v"]


def rmsprop(p, g, s, t, lr, rho, eps):
    s["s"] = rho * s.get("s", 0.0) + (1 - rho) * g**2
    return p - lr * g / (np.sqrt(s["s"]) + eps)


def adam(p, g, s, t, lr, beta1, beta2, eps, weight_decay=0.0):
    s["m"] = beta1 * s.get("m", 0.0) + (1 - beta1) * g
    s["v"] = beta2 * s.get("v", 0.0) + (1 - beta2) * g**2
    m_hat = s["m"] / (1 - beta1**t)
    v_hat = s["v"] / (1 - beta2**t)
    return p - lr * (m_hat / (np.sqrt(v_hat) + eps) + weight_decay * p)


CASES = [
    (sb.optim.SGD(lr=0.1), sgd, dict(lr=0.1)),
    (sb.optim.SGD(lr=0.05, momentum=0.9), sgd, dict(lr=0.05, momentum=0.9)),
    (sb.optim.SGD(lr=0.05, momentum=0.8, nesterov=True), sgd, dict(lr=0.05, momentum=0.8, nesterov=True)),
    (sb.optim.RMSProp(lr=0.01, rho=0.9, eps=1e-8), rmsprop, dict(lr=0.01, rho=0.9, eps=1e-8)),
    (sb.optim.Adam(lr=0.02, beta1=0.8, beta2=0.99, eps=1e-6), adam, dict(lr=0.02, beta1=0.8, beta2=0.99, eps=1e-6)),
    (sb.optim.AdamW(lr=0.02, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1), adam,
     dict(lr=0.02, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1)),
]
IDS = ["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"]


def data(dtype=np.float64, seed=0):
    r = np.random.default_rng(seed)
    W = r.normal(size=(4, 3)) * 0.5
    b = r.normal(size=3) * 0.1
    x = r.normal(size=(8, 4))
    y = r.uniform(-0.5, 0.5, size=(8, 3))
    return [a.astype(dtype) for a in (W, b, x, y)]


def reference_run(rule, hp, args, steps):
    """Losses and final parameters of `steps` steps of `rule`, in float64."""
    W, b, x, y = [np.array(a, dtype=np.float64) for a in args]
    params, states, losses = [W, b], [{}, {}], []
    for t in range(1, steps + 1):
        loss, grads = tanh_regression_by_hand(*params, x, y)
        losses.append(loss)
        params = [rule(p, g, s, t, **hp) for p, g, s in zip(params, grads, states)]
    return losses, params, states


@pytest.mark.parametrize("optimizer,rule,hp", CASES, ids=IDS)
def test_each_optimizer_follows_its_formulas(optimizer, rule, hp):
    args = data()
    want_losses, want_params, want_states = reference_run(rule, hp, args, steps=6)
    step = sb.train_step(tanh_regression, optimizer, wrt=("W", "b"))
    W, b, x, y = args
    losses = [step(W, b, x, y) for _ in range(6)]
    np.testing.assert_allclose(losses, want_losses, rtol=1e-12)
    np.testing.assert_allclose(W, want_params[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(b, want_params[1], rtol=1e-12, atol=1e-15)
    for param, want in zip(("W", "b"), want_states):
        for buffer, value in want.items():
            np.testing.assert_allclose(step.state[f"{buffer}_{param}"], value, rtol=1e-12, atol=1e-15)
    if optimizer.counts_steps:
        assert step.state["t"] == 6
    assert step.compilations == 1


def test_hyperparameters_are_runtime_inputs():
    """A learning-rate schedule changes numbers, not code."""
    args = data()
    opt = sb.optim.Adam(lr=0.05)
    step = sb.train_step(tanh_regression, opt, wrt=("W", "b"))
    W, b, x, y = args
    params, states = [args[0].copy(), args[1].copy()], [{}, {}]
    for t in range(1, 5):
        opt.lr = 0.05 / t
        step(W, b, x, y)
        _, grads = tanh_regression_by_hand(*params, x, y)
        params = [adam(p, g, s, t, lr=0.05 / t, beta1=0.9, beta2=0.999, eps=1e-8)
                  for p, g, s in zip(params, grads, states)]
    np.testing.assert_allclose(W, params[0], rtol=1e-12)
    assert step.compilations == 1
    assert "lr" in step.source.split("def step(")[1].split(")")[0]


def quadratic(w, A, c):
    return 0.5 * (w @ (A @ w)) - c @ w


@pytest.mark.parametrize("optimizer,steps", [
    (sb.optim.SGD(lr=0.09), 600),
    (sb.optim.SGD(lr=0.02, momentum=0.9), 400),
    (sb.optim.SGD(lr=0.02, momentum=0.9, nesterov=True), 400),
    (sb.optim.RMSProp(lr=0.01), 1500),
    (sb.optim.Adam(lr=0.05), 1500),
    (sb.optim.AdamW(lr=0.05, weight_decay=0.0), 1500),
], ids=IDS)
def test_converges_on_a_convex_quadratic(optimizer, steps):
    A = np.array([[10.0, 2.0], [2.0, 1.0]])  # condition number about 14
    c = np.array([1.0, -2.0])
    w = np.array([3.0, 3.0])
    step = sb.train_step(quadratic, optimizer)
    losses = [step(w, A, c) for _ in range(steps)]
    optimizer.lr /= 20  # adaptive methods hover within about lr of the minimum: anneal
    losses += [step(w, A, c) for _ in range(steps)]
    np.testing.assert_allclose(w, np.linalg.solve(A, c), atol=1e-3)
    assert losses[-1] < losses[0]


def test_adamw_decays_the_weights_towards_zero():
    A, c = np.eye(2), np.zeros(2)
    w = np.array([1.0, -1.0])
    step = sb.train_step(quadratic, sb.optim.AdamW(lr=0.01, weight_decay=0.5))
    for _ in range(300):
        step(w, A, c)
    assert np.all(np.abs(w) < 0.05)


@pytest.mark.parametrize("optimizer,rule,hp", CASES, ids=IDS)
def test_float32_parameters_keep_float32_state(optimizer, rule, hp):
    args = data(np.float32)
    W, b, x, y = args
    _, want_params, _ = reference_run(rule, hp, args, steps=4)
    step = sb.train_step(tanh_regression, optimizer, wrt=("W", "b"))
    for _ in range(4):
        loss = step(W, b, x, y)
    assert W.dtype == b.dtype == np.float32
    assert np.asarray(loss).dtype == np.float32
    assert all(v.dtype == np.float32 for v in step.state.values())
    np.testing.assert_allclose(W, want_params[0], rtol=2e-4, atol=1e-5)
    np.testing.assert_allclose(b, want_params[1], rtol=2e-4, atol=1e-5)


def test_parameters_and_state_are_updated_in_place():
    W, b, x, y = data()
    view = W[0]  # a view sees the update only if W's memory is written
    before = W.copy()
    step = sb.train_step(tanh_regression, sb.optim.Adam(lr=0.01), wrt=("W", "b"))
    step(W, b, x, y)
    state = {k: v for k, v in step.state.items()}
    step(W, b, x, y)
    assert not np.array_equal(W, before)
    np.testing.assert_array_equal(view, W[0])
    assert all(step.state[k] is v for k, v in state.items())  # the same arrays, written in place
    update = step.source.split("# update")[1]
    assert "W -= " in update and "m_W *= beta1" in update
    assert "\n        W = " not in update and "\n    W = " not in update


def test_only_wrt_parameters_change():
    W, b, x, y = data()
    b0, x0 = b.copy(), x.copy()
    sb.train_step(tanh_regression, sb.optim.SGD(lr=0.1), wrt="W")(W, b, x, y)
    np.testing.assert_array_equal(b, b0)
    np.testing.assert_array_equal(x, x0)


def test_python_float_parameters_are_refused_with_the_fix():
    step = sb.train_step(models.line, sb.optim.SGD(lr=0.1), wrt=("w", "b"))
    with pytest.raises(TypeError, match=r"0-d array .*np\.array\(0\.5\).*1-element array"):
        step(0.5, -1.0, 2.0, 3.0)


def test_zero_d_and_one_element_parameters():
    x = np.linspace(-1, 1, 20)
    y = 3.0 * x - 0.5
    w, b = np.array(0.0), np.array([0.0])
    step = sb.train_step(line_mse, sb.optim.SGD(lr=0.3), wrt=("w", "b"))
    for _ in range(200):
        step(w, b, x, y)
    assert w.shape == () and b.shape == (1,)
    np.testing.assert_allclose([w.item(), b.item()], [3.0, -0.5], atol=1e-6)


def line_mse(w, b, x, y):
    return np.mean((w * x + b - y) ** 2)


def test_gradient_that_is_another_parameter_is_read_before_it_changes():
    """For sum(a*b), d_a is b itself: b's update must not show in a's."""
    a, b = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    step = sb.train_step(product_loss, sb.optim.SGD(lr=0.1), wrt=("a", "b"))
    step(a, b)
    np.testing.assert_allclose(a, [0.7, 1.6])
    np.testing.assert_allclose(b, [2.9, 3.8])


def product_loss(a, b):
    return np.sum(a * b)


def test_read_only_and_shared_parameters_are_refused():
    W, b, x, y = data()
    step = sb.train_step(tanh_regression, sb.optim.SGD(lr=0.1), wrt=("W", "b"))
    W.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        step(W, b, x, y)
    a = np.ones(3)
    with pytest.raises(ValueError, match="share memory"):
        sb.train_step(product_loss, sb.optim.SGD(lr=0.1), wrt=("a", "b"))(a, a)


def test_state_is_kept_across_signatures_and_reset():
    W, b, x, y = data()
    step = sb.train_step(tanh_regression, sb.optim.SGD(lr=0.1, momentum=0.9), wrt=("W", "b"))
    step(W, b, x, y)
    v = step.state["v_W"].copy()
    step(W, b, x[:5], y[:5])  # a new batch size: a new specialisation, the same momentum
    assert step.compilations == 2
    assert not np.array_equal(step.state["v_W"], v) and np.any(v != 0)
    with pytest.raises(ValueError, match=r"reset\(\)"):
        step(np.zeros((4, 5)), np.zeros(5), x, np.zeros((8, 5)))
    step.reset()
    step(np.zeros((4, 5)), np.zeros(5), x, np.zeros((8, 5)))
    assert step.state["v_W"].shape == (4, 5)


def test_changing_the_structure_recompiles():
    W, b, x, y = data()
    opt = sb.optim.SGD(lr=0.1)
    step = sb.train_step(tanh_regression, opt, wrt=("W", "b"))
    step(W, b, x, y)
    assert step.state == {}
    opt.momentum = 0.9
    step(W, b, x, y)
    assert step.compilations == 2 and set(step.state) == {"v_W", "v_b"}


def test_optimizer_arguments_are_checked():
    with pytest.raises(ValueError, match="Nesterov"):
        sb.optim.SGD(lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta1"):
        sb.optim.Adam(beta1=1.0)
    with pytest.raises(ValueError, match="lr"):
        sb.optim.RMSProp(lr=-1.0)
    with pytest.raises(TypeError, match="optimizer"):
        sb.train_step(tanh_regression, "adam")
    with pytest.raises(TypeError, match="needs an optimizer"):
        sb.train_step(tanh_regression)


def test_decorator_form():
    @sb.train_step(optimizer=sb.optim.SGD(lr=0.1), wrt=("W", "b"))
    def model(W, b, x, y):
        return tanh_regression(W, b, x, y)

    assert "train_step of model" in repr(model)


def test_names_do_not_clash_with_the_models():
    """A model parameter called lr (or t, or step) leaves the optimizer's inputs their own names."""
    lr, t = np.array([1.0, 2.0]), np.array([0.5, 0.5])
    step = sb.train_step(clashing_names, sb.optim.Adam(lr=0.1), wrt="lr")
    step(lr, t)
    assert step.compilations == 1 and np.all(lr < [1.0, 2.0])


def clashing_names(lr, t):
    return np.sum((lr - t) ** 2)


RUNNER = """
import sys, json, importlib.util
import numpy as np
sys.modules["symbackprop"] = None          # importing symbackprop now fails
spec = importlib.util.spec_from_file_location("exported", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
args = [np.array(a, dtype=sys.argv[3]) if isinstance(a, list) else a for a in json.loads(sys.argv[2])]
wrt = json.loads(sys.argv[4])
state = mod.init_state(*[args[i] for i in wrt])
losses = [float(mod.train_step(*args, state)) for _ in range(3)]
print(json.dumps({"losses": losses, "params": [args[i].tolist() for i in wrt],
                  "dtypes": sorted({str(v.dtype) for v in state.values()} | {str(args[i].dtype) for i in wrt}),
                  "forward": float(mod.forward(*args))}))
"""


@pytest.mark.parametrize("model,make,wrt,dtype", [
    (tanh_regression, lambda: data(), (0, 1), "float64"),
    (tanh_regression, lambda: data(np.float32), (0, 1), "float32"),
    (models.loop_with_helpers, lambda: [*data()[:2], np.random.default_rng(1).normal(size=(5, 4)),
                                        np.random.default_rng(2).normal(size=(5, 3)), 3], (0, 1), "float64"),
], ids=["float64", "float32", "static-argument"])
def test_exported_step_runs_without_symbackprop(tmp_path, model, make, wrt, dtype):
    args = make()
    exported = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    step = sb.train_step(model, sb.optim.AdamW(lr=0.01, weight_decay=0.1), wrt=wrt)
    path = tmp_path / "step.py"
    step.export(path, *args)
    text = path.read_text()
    imports = [l for l in text.splitlines() if l.startswith(("import ", "from "))]
    assert imports == ["import numpy as np"]
    code = [l for l in text.split('"""', 2)[2].splitlines() if not l.startswith("_HOW = ")]  # messages name the docs
    assert "symbackprop" not in "\n".join(code)
    losses = [float(step(*args)) for _ in range(3)]
    encoded = json.dumps([a.tolist() if isinstance(a, np.ndarray) else a for a in exported])
    out = subprocess.run([sys.executable, "-c", RUNNER, str(path), encoded, dtype, json.dumps(list(wrt))],
                         capture_output=True, text=True, check=True, cwd=tmp_path)
    result = json.loads(out.stdout)
    assert result["losses"] == losses
    assert result["dtypes"] == [dtype]
    for got, i in zip(result["params"], wrt):
        np.testing.assert_array_equal(np.asarray(got, dtype=dtype), args[i])
    assert result["forward"] == pytest.approx(float(model(*args)), rel=1e-5)


@pytest.mark.parametrize("optimizer,reference,hyper", CASES, ids=IDS)
def test_llvm_train_step_matches_the_numpy_one(optimizer, reference, hyper):
    """The same update kernels lowered to LLVM: parameters and state move as on the NumPy backend."""
    args_np, args_ll = data(), data()
    step_np = sb.train_step(tanh_regression, optimizer, wrt=("W", "b"))
    step_ll = sb.train_step(tanh_regression, optimizer, wrt=("W", "b"), backend="llvm")
    for _ in range(4):
        loss_np, loss_ll = step_np(*args_np), step_ll(*args_ll)
        assert loss_ll == pytest.approx(loss_np, rel=1e-12)
    for a, b in zip(args_ll[:2], args_np[:2]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    for name, value in step_np.state.items():
        np.testing.assert_allclose(step_ll.state[name], value, rtol=1e-12, atol=1e-14)
    assert "define" in step_ll.source


def test_llvm_train_step_updates_strided_parameters_in_place():
    W, b, x, y = data()
    big = np.zeros((W.shape[0], 2 * W.shape[1]))
    big[:, ::2] = W
    strided = big[:, ::2]
    step = sb.train_step(tanh_regression, sb.optim.SGD(lr=0.1), wrt=("W", "b"), backend="llvm")
    reference = sb.train_step(tanh_regression, sb.optim.SGD(lr=0.1), wrt=("W", "b"))
    W2, b2 = W.copy(), b.copy()
    step(strided, b, x, y)
    reference(W2, b2, x, y)
    np.testing.assert_allclose(strided, W2, rtol=1e-12)
    assert not np.array_equal(strided, W)


def test_train_step_exports_a_shared_library(tmp_path):
    """The .so runs Adam steps in place through its C entry point, as the library does."""
    import ctypes
    W, b, x, y = data()
    opt = sb.optim.Adam(lr=0.01)
    step = sb.train_step(tanh_regression, opt, wrt=("W", "b"))
    path = tmp_path / "step.so"
    step.export(path, W, b, x, y)
    header = (tmp_path / "step.h").read_text()
    assert "int tanh_regression_train_step(" in header and "double* W,  /* updated in place" in header
    (tmp_path / "step.ll").write_text("")
    step.export(tmp_path / "step.ll", W, b, x, y)
    assert "tanh_regression_train_step" in (tmp_path / "step.ll").read_text()
    lib = ctypes.CDLL(str(path))
    state = {"m_W": np.zeros_like(W), "v_W": np.zeros_like(W), "m_b": np.zeros_like(b), "v_b": np.zeros_like(b)}
    t = np.zeros(())
    W_c, b_c = W.copy(), b.copy()
    compiled = step.specialise(W, b, x, y)
    order = [p.name for p in compiled.graph.params]
    for _ in range(3):
        values = {"W": W_c, "b": b_c, "x": x, "y": y, "t": t, **state}
        values.update({name: np.array(opt.values()[attr]) for name, attr in compiled.hyper})
        loss = np.zeros(())
        status = lib.tanh_regression_train_step(*[ctypes.c_void_p(values[n].ctypes.data) for n in order],
                                                ctypes.c_void_p(loss.ctypes.data))
        assert status == 0
        want = step(W, b, x, y)
        assert float(loss) == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(W_c, W, rtol=1e-12)
    np.testing.assert_allclose(b_c, b, rtol=1e-12)


def test_stacked_layers_train_alike_on_both_backends():
    """A loop over stacked weights: the NumPy step batches every layer's gradient (stacking.py) before
    Adam updates Ws and bs in place; the LLVM step computes them layer by layer."""
    rng = np.random.default_rng(0)
    start = [rng.normal(size=(4, 8, 8)) * 0.3, rng.normal(size=(4, 8)) * 0.1, rng.normal(size=(5, 8))]
    runs = {}
    for backend in ("numpy", "llvm"):
        args = [a.copy() for a in start]
        step = sb.train_step(models.loop_stacked, sb.optim.Adam(lr=0.01), wrt=(0, 1), backend=backend)
        losses = [step(*args) for _ in range(3)]
        runs[backend] = (args, losses, step)
    assert "np.matmul(hs[:4].transpose(0, 2, 1), d_ts)" in runs["numpy"][2].source
    (a_np, l_np, _), (a_ll, l_ll, _) = runs["numpy"], runs["llvm"]
    np.testing.assert_allclose(l_ll, l_np, rtol=1e-12)
    assert l_np[2] < l_np[0]
    for a, b in zip(a_ll[:2], a_np[:2]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(a_np[2], start[2])  # x is read (copied into hs[0]), never written
