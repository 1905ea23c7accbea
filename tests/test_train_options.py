"""train_step's options on both backends: weight decay, learning-rate schedules, clipping, accumulation."""
import ctypes
import importlib.util
import math

import numpy as np
import pytest

import symbackprop as sb
from symbackprop.optim import schedules
from test_optim import adam, rmsprop, sgd


def mean_regression(W, b, x, y):
    """A mean over the batch: k microbatches of size n give the gradient of one batch of size k*n."""
    h = np.tanh(x @ W + b)
    return 0.5 * np.mean(np.sum((h - y) ** 2, axis=1))


def sum_regression(W, b, x, y):
    """A sum over the batch: the summed gradients of k microbatches are the gradient of one batch k times larger."""
    h = np.tanh(x @ W + b)
    return 0.5 * np.sum((h - y) ** 2)


def mean_regression_by_hand(W, b, x, y):
    h = np.tanh(x @ W + b)
    r = h - y
    dz = r * (1 - h**2) / x.shape[0]
    return 0.5 * np.mean(np.sum(r**2, axis=1)), [x.T @ dz, dz.sum(axis=0)]


def data(n=12, seed=0, scale=1.0):
    r = np.random.default_rng(seed)
    W = r.normal(size=(4, 3)) * 0.5
    b = r.normal(size=3) * 0.1
    x = r.normal(size=(n, 4)) * scale
    y = r.uniform(-0.5, 0.5, size=(n, 3))
    return [W, b, x, y]


def run_reference(rule, hp, args, steps, grads_of=None):
    """Parameters and state after `steps` updates of `rule`, the gradient (and its changes) by hand."""
    W, b, x, y = [np.array(a) for a in args]
    params, states = [W, b], [{}, {}]
    for t in range(1, steps + 1):
        _, grads = mean_regression_by_hand(*params, x, y)
        if grads_of is not None:
            grads = grads_of(params, grads, t)
        params = [rule(p, g, s, t, **hp(t)) for p, g, s in zip(params, grads, states)]
    return params, states


def assert_close(got, want):
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


# ---- weight decay ------------------------------------------------------------------------

def l2(rule):
    """The rule on g + weight_decay*p (the decay folded into the gradient)."""
    def decayed(p, g, s, t, weight_decay, **hp):
        return rule(p, g + weight_decay * p, s, t, **hp)
    return decayed


def decoupled(rule):
    """p*(1 - lr*weight_decay) and then the rule's step: p_new = rule(p) - lr*weight_decay*p."""
    def decayed(p, g, s, t, weight_decay, **hp):
        return rule(p, g, s, t, **hp) - hp["lr"] * weight_decay * p
    return decayed


DECAYED = [
    ("sgd", lambda **k: sb.optim.SGD(lr=0.1, **k), sgd, dict(lr=0.1)),
    ("momentum", lambda **k: sb.optim.SGD(lr=0.05, momentum=0.9, **k), sgd, dict(lr=0.05, momentum=0.9)),
    ("nesterov", lambda **k: sb.optim.SGD(lr=0.05, momentum=0.8, nesterov=True, **k), sgd,
     dict(lr=0.05, momentum=0.8, nesterov=True)),
    ("rmsprop", lambda **k: sb.optim.RMSProp(lr=0.01, **k), rmsprop, dict(lr=0.01, rho=0.9, eps=1e-8)),
    ("adam", lambda **k: sb.optim.Adam(lr=0.02, beta1=0.8, beta2=0.99, eps=1e-6, **k), adam,
     dict(lr=0.02, beta1=0.8, beta2=0.99, eps=1e-6)),
]


@pytest.mark.parametrize("decay,wrap", [("l2", l2), ("decoupled", decoupled)])
@pytest.mark.parametrize("name,make,rule,hp", DECAYED, ids=[d[0] for d in DECAYED])
def test_weight_decay_follows_its_formula(backend, name, make, rule, hp, decay, wrap):
    args = data()
    want, _ = run_reference(wrap(rule), lambda t: {**hp, "weight_decay": 0.3}, args, steps=5)
    step = sb.train_step(mean_regression, make(weight_decay=0.3, decay=decay), wrt=("W", "b"), backend=backend)
    for _ in range(5):
        step(*args)
    assert_close(args[:2], want)
    assert backend == "llvm" or "weight_decay" in step.source.split("# update")[1]


def test_adam_decoupled_is_adamw(backend):
    a, b = data(), data()
    adamw = sb.train_step(mean_regression, sb.optim.AdamW(lr=0.01, weight_decay=0.2), wrt=("W", "b"), backend=backend)
    adam_ = sb.train_step(mean_regression, sb.optim.Adam(lr=0.01, weight_decay=0.2, decay="decoupled"),
                          wrt=("W", "b"), backend=backend)
    for _ in range(4):
        assert adamw(*a) == adam_(*b)
    np.testing.assert_array_equal(a[0], b[0])


def test_weight_decay_must_say_which():
    """torch's Adam(weight_decay=) is L2 and AdamW's is decoupled: ours asks instead of guessing."""
    with pytest.raises(ValueError, match=r"decay='l2'.*decay='decoupled'"):
        sb.optim.Adam(weight_decay=0.1)
    with pytest.raises(ValueError, match="decay must be"):
        sb.optim.SGD(weight_decay=0.1, decay="L2")
    opt = sb.optim.RMSProp()
    step = sb.train_step(mean_regression, opt, wrt=("W", "b"))
    opt.weight_decay = 0.1  # set later, still without a decay: refused at the call, before anything changes
    args = data()
    W = args[0].copy()
    with pytest.raises(ValueError, match="decay is None"):
        step(*args)
    np.testing.assert_array_equal(args[0], W)
    assert "decay='l2'" in repr(sb.optim.SGD(weight_decay=0.1, decay="l2"))


def test_weight_decay_is_a_runtime_input():
    opt = sb.optim.SGD(lr=0.1, momentum=0.9, weight_decay=0.0, decay="decoupled")
    step = sb.train_step(mean_regression, opt, wrt=("W", "b"))
    args = data()
    for wd in (0.0, 0.1, 0.5):
        opt.weight_decay = wd
        step(*args)
    assert step.compilations == 1


# ---- learning-rate schedules ----------------------------------------------------------------

SCHEDULES = [
    (schedules.constant(0.3), lambda t: 0.3),
    (schedules.step(0.5, every=3, gamma=0.1), lambda t: 0.5 * 0.1 ** ((t - 1) // 3)),
    (schedules.exponential(0.2, gamma=0.9), lambda t: 0.2 * 0.9 ** (t - 1)),
    (schedules.cosine(0.4, total=10, lr_min=0.01),
     lambda t: 0.01 + 0.39 * (1 + math.cos(math.pi * min(t - 1, 10) / 10)) / 2),
    (schedules.warmup_cosine(0.4, warmup=4, total=12, lr_min=0.02),
     lambda t: 0.4 * (t - 1) / 4 if t <= 4 else 0.02 + 0.38 * (1 + math.cos(math.pi * min(t - 5, 8) / 8)) / 2),
]
SCHEDULE_IDS = ["constant", "step", "exponential", "cosine", "warmup_cosine"]


@pytest.mark.parametrize("schedule,formula", SCHEDULES, ids=SCHEDULE_IDS)
def test_each_schedule_follows_its_formula(schedule, formula):
    values = [schedule(t) for t in range(1, 25)]
    np.testing.assert_allclose(values, [formula(t) for t in range(1, 25)], rtol=1e-14, atol=1e-16)
    assert all(isinstance(v, float) for v in values)


def test_schedule_landmarks():
    assert schedules.step(1.0, every=2, gamma=0.5)(3) == 0.5  # updates 1, 2 at 1.0; 3, 4 at 0.5
    cos = schedules.cosine(1.0, total=4, lr_min=0.1)
    assert cos(1) == 1.0 and cos(3) == pytest.approx(0.55) and cos(5) == cos(50) == pytest.approx(0.1)
    warm = schedules.warmup_cosine(1.0, warmup=2, total=6, start=0.2)
    assert [warm(1), warm(2), warm(3)] == pytest.approx([0.2, 0.6, 1.0], rel=1e-15)
    assert warm(7) == warm(100) == 0.0
    with pytest.raises(ValueError, match="warmup"):
        schedules.warmup_cosine(1.0, warmup=5, total=5)
    with pytest.raises(ValueError, match="every"):
        schedules.step(1.0, every=0)
    with pytest.raises(ValueError, match="t"):
        schedules.constant(1.0)(0)


@pytest.mark.parametrize("schedule,formula", SCHEDULES + [(lambda t: 0.5 / t, lambda t: 0.5 / t)],
                         ids=SCHEDULE_IDS + ["callable"])
def test_schedules_drive_the_step_without_recompiling(backend, schedule, formula):
    """lr(t) is evaluated before each update, t = 1 on the first, and passed in: one compilation."""
    args = data()
    steps = 30
    hp = dict(beta1=0.9, beta2=0.999, eps=1e-8)
    want, _ = run_reference(adam, lambda t: {**hp, "lr": formula(t)}, args, steps)
    step = sb.train_step(mean_regression, sb.optim.Adam(lr=schedule), wrt=("W", "b"), backend=backend)
    for _ in range(steps):
        step(*args)
    assert_close(args[:2], want)
    assert step.compilations == 1 and step.steps == steps


def test_a_schedule_counts_updates_not_calls(backend):
    seen = []

    def lr(t):
        seen.append(t)
        return 0.1

    step = sb.train_step(mean_regression, sb.optim.SGD(lr=lr), wrt=("W", "b"), accumulate=3, backend=backend)
    args = data()
    for _ in range(9):
        step(*args)
    # (compiling reads lr(1) too: the default of the exported module's lr)
    assert seen[-3:] == [1, 2, 3] and set(seen) == {1, 2, 3} and step.steps == 3
    step.reset()
    step(*args), step(*args)
    assert seen[-1] == 3
    step(*args)
    assert seen[-1] == 1


def test_a_schedule_giving_no_number_is_refused():
    step = sb.train_step(mean_regression, sb.optim.SGD(lr=lambda t: "fast"), wrt=("W", "b"))
    with pytest.raises(TypeError, match=r"SGD.lr\(1\) must be a real number"):
        step(*data())
    assert step.steps == 0


# ---- clipping --------------------------------------------------------------------------------

def global_norm(arrays):
    return math.sqrt(sum(float(np.sum(a * a)) for a in arrays))


def test_clipping_gives_the_norm_asked(backend):
    """With SGD at lr 1 the parameters move by minus the clipped gradient: its global norm is clip_norm."""
    args = data(scale=3.0)
    before = [a.copy() for a in args[:2]]
    _, grads = mean_regression_by_hand(*args)
    assert global_norm(grads) > 0.5
    step = sb.train_step(mean_regression, sb.optim.SGD(lr=1.0), wrt=("W", "b"), clip_norm=0.1, backend=backend)
    step(*args)
    moved = [b - a for a, b in zip(args[:2], before)]
    assert global_norm(moved) == pytest.approx(0.1, rel=1e-5)
    scale = 0.1 / (global_norm(grads) + 1e-6)  # the documented eps
    assert_close(moved, [g * scale for g in grads])


def test_a_small_gradient_is_not_clipped(backend):
    a, b = data(), data()
    _, grads = mean_regression_by_hand(*a)
    c = 2 * global_norm(grads)
    clipped = sb.train_step(mean_regression, sb.optim.SGD(lr=0.1), wrt=("W", "b"), clip_norm=c, backend=backend)
    plain = sb.train_step(mean_regression, sb.optim.SGD(lr=0.1), wrt=("W", "b"), backend=backend)
    clipped(*a), plain(*b)
    np.testing.assert_array_equal(a[0], b[0])


def test_clipped_adam_against_the_formula(backend):
    args = data(scale=10.0)
    c = 0.7

    def clip(params, grads, t):
        scale = min(1.0, c / (global_norm(grads) + 1e-6))
        return [g * scale for g in grads]

    hp = dict(lr=0.05, beta1=0.9, beta2=0.999, eps=1e-8)
    want, _ = run_reference(adam, lambda t: hp, args, steps=6, grads_of=clip)
    step = sb.train_step(mean_regression, sb.optim.Adam(**hp), wrt=("W", "b"), clip_norm=c, backend=backend)
    for _ in range(6):
        step(*args)
    assert_close(args[:2], want)


def test_clip_norm_is_a_runtime_input(backend):
    step = sb.train_step(mean_regression, sb.optim.SGD(lr=0.1), wrt=("W", "b"), clip_norm=1.0, backend=backend)
    args = data()
    for c in (1.0, 0.1, 3.0):
        step.clip_norm = c
        step(*args)
    assert step.compilations == 1
    step.clip_norm = None  # no clipping is other code
    step(*args)
    assert step.compilations == 2
    with pytest.raises(ValueError, match="clip_norm"):
        step.clip_norm = 0.0
    with pytest.raises(ValueError, match="clip_norm"):
        sb.train_step(mean_regression, sb.optim.SGD(), clip_norm=-1)


# ---- accumulation ------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda: sb.optim.SGD(lr=0.3 / 12), lambda: sb.optim.SGD(lr=0.1 / 12, momentum=0.9),
                                  lambda: sb.optim.Adam(lr=0.05)], ids=["sgd", "momentum", "adam"])
@pytest.mark.parametrize("clip_norm", [None, 0.05], ids=["", "clipped"])
def test_k_microbatches_equal_one_full_batch(backend, make, clip_norm):
    """A sum loss: the sum of k microbatch gradients is the full batch's, so the updates agree to 1e-12."""
    k, n = 3, 4
    full, micro = data(k * n), data(k * n)
    x, y = micro[2], micro[3]
    whole = sb.train_step(sum_regression, make(), wrt=("W", "b"), clip_norm=clip_norm, backend=backend)
    parts = sb.train_step(sum_regression, make(), wrt=("W", "b"), clip_norm=clip_norm, accumulate=k,
                          backend=backend)
    for _ in range(4):
        whole(*full)
        for i in range(k):
            W_before, b_before = micro[0].copy(), micro[1].copy()
            loss = parts(micro[0], micro[1], x[i * n:(i + 1) * n], y[i * n:(i + 1) * n])
            assert loss == pytest.approx(sum_regression(W_before, b_before, x[i * n:(i + 1) * n],
                                                         y[i * n:(i + 1) * n]), rel=1e-12)
            if i < k - 1:
                np.testing.assert_array_equal(micro[0], W_before)  # only the k-th call updates
        assert_close(micro[:2], full[:2])
        for name, value in whole.state.items():
            np.testing.assert_allclose(parts.state[name], value, rtol=1e-12, atol=1e-15)
    assert parts.steps == whole.steps == 4 and parts.compilations == 1
    assert parts.state["accumulated"] == 0
    assert not parts.state["acc_W"].any() and not parts.state["acc_b"].any()


def test_accumulation_state_between_calls(backend):
    step = sb.train_step(mean_regression, sb.optim.SGD(lr=0.1), wrt=("W", "b"), accumulate=2, backend=backend)
    args = data()
    step(*args)
    _, grads = mean_regression_by_hand(*args)
    assert step.state["accumulated"] == 1 and step.steps == 0
    np.testing.assert_allclose(step.state["acc_W"], grads[0], rtol=1e-12)
    step.reset()
    assert step.state == {} and step.steps == 0
    with pytest.raises(ValueError, match="accumulate"):
        sb.train_step(mean_regression, sb.optim.SGD(), accumulate=0)


def test_accumulating_step_exports_and_runs_alone(tmp_path):
    """The .py module keeps the count in its state dict and runs `accumulate` k - 1 times, then `step`."""
    args, exported = data(), data()
    step = sb.train_step(mean_regression, sb.optim.Adam(lr=0.05), wrt=("W", "b"), accumulate=3, clip_norm=0.5)
    path = step.export(tmp_path / "acc_step.py", *args)
    spec = importlib.util.spec_from_file_location("acc_step", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    state = module.init_state(exported[0], exported[1])
    assert state["accumulated"] == 0 and set(state) >= {"acc_W", "acc_b", "m_W", "t"}
    for _ in range(7):
        assert module.train_step(*exported, state, lr=0.05, clip_norm=0.5) == step(*args)
    np.testing.assert_array_equal(exported[0], args[0])
    assert state["accumulated"] == step.state["accumulated"] == 1


def test_accumulating_step_exports_a_shared_library(tmp_path):
    """Both C functions in one library: <model>_accumulate for k - 1 calls, then <model>_train_step."""
    args = data()
    opt = sb.optim.SGD(lr=0.2, momentum=0.5)
    step = sb.train_step(mean_regression, opt, wrt=("W", "b"), accumulate=2)
    path = tmp_path / "acc.so"
    step.export(path, *args)
    header = (tmp_path / "acc.h").read_text()
    assert "int mean_regression_train_step(" in header and "int mean_regression_accumulate(" in header
    assert "sum of the gradients for W" in header
    lib = ctypes.CDLL(str(path))
    compiled = step.specialise(*args)
    W, b = args[0].copy(), args[1].copy()
    values = {"W": W, "b": b, "x": args[2], "y": args[3], "acc_W": np.zeros_like(W), "acc_b": np.zeros_like(b),
              "v_W": np.zeros_like(W), "v_b": np.zeros_like(b), "lr": np.array(0.2), "momentum": np.array(0.5)}

    def call(fn, program):
        loss = np.zeros(())
        assert fn(*[ctypes.c_void_p(values[p.name].ctypes.data) for p in program.graph.params],
                  ctypes.c_void_p(loss.ctypes.data)) == 0
        return float(loss)

    for _ in range(2):
        assert call(lib.mean_regression_accumulate, compiled.accumulating) == pytest.approx(step(*args), rel=1e-12)
        assert call(lib.mean_regression_train_step, compiled) == pytest.approx(step(*args), rel=1e-12)
    np.testing.assert_allclose(W, args[0], rtol=1e-12)
    np.testing.assert_allclose(values["v_b"], step.state["v_b"], rtol=1e-12)


def test_accumulated_float32_state_stays_float32(backend):
    args = [a.astype(np.float32) for a in data()]
    step = sb.train_step(mean_regression, sb.optim.Adam(lr=0.01), wrt=("W", "b"), accumulate=2, clip_norm=1.0,
                         backend=backend)
    for _ in range(4):
        loss = step(*args)
    assert np.asarray(loss).dtype == np.float32 and args[0].dtype == np.float32
    assert all(v.dtype == np.float32 for k, v in step.state.items() if k != "accumulated")
