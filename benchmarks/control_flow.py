"""W7: a `while` loop whose trip count depends on the data (issue 14), timed against its peers.

The model solves u**3 + u = x @ W + b elementwise by Newton steps on the whole batch, from u = 0,
until every step is below 1e-10, then takes a squared error. Two input sets, the second with larger
pre-activations, need different numbers of steps; symbackprop compiles once for both (same
shapes) and its tapes record each call's own trip count. Implementations, value_and_grad:

- hand-written: NumPy backprop recording a Python list of (u, step, 1 / (3*u**2 + 1)) per
  iteration, replayed backward (checked by benchmarks/check.py against central differences); its
  backward uses that a Newton step's derivative through f and through u' cancel (5 array
  operations per step back);
- hand-chain-rule: the same tape and forward, the backward op by op (10 per step back),
  without that cancellation: the ratios are still taken against the first;
- symbackprop-numpy and symbackprop-llvm;
- torch: PyTorch eager, float64, one thread, `torch.autograd.grad` through the Python while loop;
- jax: `jax.grad` through `jax.lax.while_loop` raises under reverse mode: the script runs it and
  prints what it raises. As a reference only, `jax.jit(jax.value_and_grad)` of a `lax.fori_loop`
  with the trip count fixed to the one this input set takes ("jax-fixed-trips"): it does not know
  when to stop, it is told.

Timing is benchmarks/harness.py's: every gradient checked against the hand-written one first,
then interleaved rounds of ~20 ms batches, medians; one thread, the process pinned to one core.
Targets (issue 14): NumPy backend at most 1.3x hand-written, LLVM at most 1.0x, both ahead of
PyTorch eager.

Run: nice -n 10 python -m benchmarks.control_flow [--rounds 21]
"""

import os
import sys

from benchmarks import THREAD_ENV

PINNED_CORE = None
if __name__ == "__main__":                     # run as a script: before NumPy, PyTorch or JAX loads
    os.environ.update(THREAD_ENV)
if hasattr(os, "sched_setaffinity") and __name__ == "__main__":
    PINNED_CORE = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {PINNED_CORE})

import numpy as np  # noqa: E402

from benchmarks.workloads import Workload  # noqa: E402

TOL = 1e-10
MAX_STEPS = 100
BATCH, INPUTS, OUTPUTS = 128, 32, 32


def batched_newton(W, b, x, y):
    """Newton steps solving u**3 + u = x @ W + b on the whole batch until every update is below
    the tolerance, then a squared error."""
    z = x @ W + b
    u = np.zeros_like(z)
    step = np.ones_like(z)
    k = 0
    while np.max(np.abs(step)) > 1e-10 and k < 100:
        f = u ** 3 + u - z
        step = f / (3.0 * u ** 2 + 1.0)
        u = u - step
        k += 1
    return np.mean((u - y) ** 2)


def newton_inputs(scale, seed=7):
    """W, b, x, y; `scale` sets the size of x @ W + b and so the number of Newton steps."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(INPUTS, OUTPUTS)) * (scale / np.sqrt(INPUTS))
    b = rng.normal(size=OUTPUTS) * 0.1
    x = rng.normal(size=(BATCH, INPUTS))
    y = rng.normal(size=(BATCH, OUTPUTS))
    return W, b, x, y


def trip_count(W, b, x, y):
    """How many Newton steps `batched_newton` takes on these inputs."""
    z = x @ W + b
    u, step, k = np.zeros_like(z), np.ones_like(z), 0
    while np.max(np.abs(step)) > TOL and k < MAX_STEPS:
        step = (u ** 3 + u - z) / (3.0 * u ** 2 + 1.0)
        u = u - step
        k += 1
    return k


# --- the hand-written expert ---------------------------------------------------------------------

def newton_forward(W, b, x, y):
    z = x @ W
    z += b
    u = np.zeros_like(z)
    k = 0
    while k < MAX_STEPS:
        uu = u * u
        step = uu * u
        step += u
        step -= z
        uu *= 3.0
        uu += 1.0
        step /= uu
        u = u - step
        k += 1
        if np.max(np.abs(step)) <= TOL:
            break
    d = (u - y).ravel()
    return (d @ d) / d.size


def _newton_taped(W, b, x, y):
    """The forward pass both hand-written backprops share: z, the tape of (u, step, r) per step, the
    loss and its gradient with respect to the last u, and a zero dz to accumulate into."""
    z = x @ W
    z += b
    u = np.zeros_like(z)
    tape = []
    k = 0
    while k < MAX_STEPS:
        uu = u * u
        step = uu * u
        step += u
        step -= z
        uu *= 3.0
        uu += 1.0
        r = 1.0 / uu
        step *= r
        tape.append((u, step, r))
        u = u - step
        k += 1
        if np.max(np.abs(step)) <= TOL:
            break
    d = u - y
    flat = d.ravel()
    loss = (flat @ flat) / flat.size
    du = d * (2.0 / flat.size)
    dz = np.zeros_like(z)
    return z, tape, loss, du, dz


def newton_value_and_grad(W, b, x, y):
    """Loss and (dW, db); the tape holds, per step, u, the step and r = 1 / (3*u**2 + 1).

    Step: f = u**3 + u - z, step = f*r, u' = u - step. Backward, with g = du'*r: through u' and
    through f the du' cancels (f's derivative is 1/r), through r it is d_step*f*(-r**2)*6u, so
    du = 6*u*step*g and dz += g.
    """
    z, tape, loss, du, dz = _newton_taped(W, b, x, y)
    while tape:
        u, step, r = tape.pop()
        du *= r                  # g
        dz += du
        du *= step
        du *= u
        du *= 6.0
    return loss, (x.T @ dz, dz.sum(axis=0))


def newton_value_and_grad_chain_rule(W, b, x, y):
    """The same tape, the backward written op by op by the chain rule, without the cancellation the
    expert above uses (a second baseline: what symbackprop's adjoint rules can reach without algebra
    across operations)."""
    z, tape, loss, du, dz = _newton_taped(W, b, x, y)
    while tape:
        u, step, r = tape.pop()
        d_f = du * r                     # step = f*r, u' = u - step: d_step = -du'
        d_f *= -1.0
        d_q = du * step                  # r = 1/q: d_q = -d_r*r**2 with d_r = d_step*f = -du'*step/r
        d_q *= r
        dz -= d_f                        # f = u**3 + u - z
        d_f /= r                         # df/du = q = 1/r
        du = du + d_f
        d_q *= u
        d_q *= 6.0                       # q = 3*u**2 + 1
        du += d_q
    return loss, (x.T @ dz, dz.sum(axis=0))


W7 = Workload("W7", f"Newton iteration to 1e-10 on a {BATCH}x{OUTPUTS} batch, then squared error",
              batched_newton, lambda: newton_inputs(1.0), ("W", "b"),
              newton_forward, newton_value_and_grad)
W7_LARGE = Workload("W7b", f"W7, pre-activations 16x as large (more Newton steps)",
                    batched_newton, lambda: newton_inputs(16.0), ("W", "b"),
                    newton_forward, newton_value_and_grad)
WORKLOADS = (W7, W7_LARGE)


# --- peers -----------------------------------------------------------------------------------------

def torch_impl(workload):
    """PyTorch eager: the model as a PyTorch user writes it, the while loop in Python."""
    import torch
    from benchmarks.harness import Impl
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass

    def model(W, b, x, y):
        z = torch.addmm(b, x, W)
        u = torch.zeros_like(z)
        step = torch.ones_like(z)
        k = 0
        while torch.max(torch.abs(step)) > TOL and k < MAX_STEPS:
            f = u ** 3 + u - z
            step = f / (3.0 * u ** 2 + 1.0)
            u = u - step
            k += 1
        return torch.mean((u - y) ** 2)

    def value_and_grad(W, b, x, y):
        loss = model(W, b, x, y)
        return loss.detach(), torch.autograd.grad(loss, (W, b))

    def forward(*args):
        with torch.no_grad():
            return model(*args)

    def to_numpy(result):
        loss, grads = result
        return float(loss), tuple(g.numpy() for g in grads)

    W, b, x, y = workload.make_inputs()
    args = (torch.from_numpy(W).requires_grad_(), torch.from_numpy(b).requires_grad_(),
            torch.from_numpy(x), torch.from_numpy(y))
    return Impl("torch", value_and_grad, forward, args, to_numpy)


def jax_while_loop_model(jnp, lax):
    """The model with its loop as `lax.while_loop`, as JAX requires for a data-dependent stop."""
    def model(W, b, x, y):
        z = x @ W + b

        def cond(state):
            u, step, k = state
            return (jnp.max(jnp.abs(step)) > TOL) & (k < MAX_STEPS)

        def body(state):
            u, step, k = state
            step = (u ** 3 + u - z) / (3.0 * u ** 2 + 1.0)
            return u - step, step, k + 1

        u, _, _ = lax.while_loop(cond, body, (jnp.zeros_like(z), jnp.ones_like(z), 0))
        return jnp.mean((u - y) ** 2)
    return model


def jax_while_loop_behaviour(workload):
    """What `jax.grad` through the `lax.while_loop` model does: (forward value, the exception)."""
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    model = jax_while_loop_model(jnp, jax.lax)
    args = tuple(jnp.asarray(a) for a in workload.make_inputs())
    value = float(jax.jit(model)(*args))
    try:
        jax.grad(model, argnums=(0, 1))(*args)
    except Exception as exc:                   # what reverse mode through while_loop raises
        return value, exc
    return value, None


def jax_fixed_trips_impl(workload, trips):
    """Reference only: jit(value_and_grad) of a `lax.fori_loop` told the trip count."""
    import jax
    import jax.numpy as jnp
    from benchmarks.harness import Impl
    jax.config.update("jax_enable_x64", True)

    def model(W, b, x, y):
        z = x @ W + b

        def body(_, u):
            return u - (u ** 3 + u - z) / (3.0 * u ** 2 + 1.0)

        u = jax.lax.fori_loop(0, trips, body, jnp.zeros_like(z))
        return jnp.mean((u - y) ** 2)

    value_and_grad = jax.jit(jax.value_and_grad(model, argnums=(0, 1)))
    forward = jax.jit(model)
    block = jax.block_until_ready
    args = tuple(jnp.asarray(a) for a in workload.make_inputs())
    return Impl("jax-fixed-trips", lambda *a: block(value_and_grad(*a)),
                lambda *a: block(forward(*a)), args)


# --- run -------------------------------------------------------------------------------------------

def cpu_time_medians(impls, rounds, target_seconds):
    """{impl name: median CPU seconds of this process per value_and_grad call}, interleaved as the
    harness does: on a machine shared with other sessions, the time the process was not running
    drops out of these (memory and cache contention does not)."""
    import gc
    import statistics
    import time

    from benchmarks import harness
    plan = [(impl, harness._calls_per_batch(impl.value_and_grad, impl.args, target_seconds))
            for impl in impls]
    samples = {impl.name: [] for impl in impls}
    for r in range(rounds):
        shift = r % len(plan)
        for impl, calls in plan[shift:] + plan[:shift]:
            gc.disable()
            start = time.process_time()
            for _ in range(calls):
                impl.value_and_grad(*impl.args)
            samples[impl.name].append((time.process_time() - start) / calls)
            gc.enable()
    return {name: statistics.median(times) for name, times in samples.items()}


def main(argv=None):
    import argparse
    import platform
    import time

    from benchmarks import check, harness
    parser = argparse.ArgumentParser(prog="python -m benchmarks.control_flow",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--batch-ms", type=float, default=20.0)
    options = parser.parse_args(argv)

    for workload in WORKLOADS:
        problems = check.check_workload(workload)
        assert not problems, f"hand-written {workload.name} fails its check: {problems}"
    print(f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {platform.machine()}, {os.cpu_count()} cores "
          "shared with other sessions, "
          f"one thread ({', '.join(f'{k}={v}' for k, v in THREAD_ENV.items())}), "
          + (f"process pinned to core {PINNED_CORE}" if PINNED_CORE is not None else "not pinned")
          + f"; python {platform.python_version()}, numpy {np.__version__}")
    print(f"medians over {options.rounds} interleaved rounds of ~{options.batch_ms:.0f} ms batches; "
          "every gradient checked against the hand-written one (itself checked against central "
          "differences) before timing\n")
    trips = {w.name: trip_count(*w.make_inputs()) for w in WORKLOADS}
    print("trip counts: " + ", ".join(f"{name} {k} Newton steps" for name, k in trips.items()) + "\n")

    compiled = {}
    results = []
    for workload in WORKLOADS:
        impls = [harness.hand_written_impl(workload),
                 harness.Impl("hand-chain-rule", newton_value_and_grad_chain_rule,
                              newton_forward, workload.make_inputs())]
        for impl in harness.symbackprop_impls(workload):
            # one compiled function for both input sets: same shapes, different trip counts
            impl.value_and_grad = compiled.setdefault(impl.name, impl.value_and_grad)
            impl.forward = impl.value_and_grad.forward
            impls.append(impl)
        impls.append(torch_impl(workload))
        impls.append(jax_fixed_trips_impl(workload, trips[workload.name]))
        measurements = harness.measure_workload(workload, impls, options.rounds,
                                                options.batch_ms / 1e3)
        results.append((workload, measurements))
        by_name = {m.impl: m for m in measurements}
        hand = by_name["hand-written"].median("value_and_grad")
        print("  value_and_grad / hand-written: " + ", ".join(
            f"{m.impl} {m.median('value_and_grad') / hand:.2f}x" for m in measurements
            if m.median("value_and_grad")))
        cpu = cpu_time_medians([i for i in impls if not by_name[i.name].error], options.rounds,
                               options.batch_ms / 1e3)
        print("  CPU time of the process, value_and_grad (median; its ratio to hand-written): " + ", ".join(
            f"{name} {harness._fmt(t)} ({t / cpu['hand-written']:.2f}x)" for name, t in cpu.items()))
        print()

    for name, fn in compiled.items():
        print(f"{name}: {fn.compilations} compilation(s) of value_and_grad for both input sets")

    import jax
    value, exc = jax_while_loop_behaviour(W7)
    print(f"JAX {jax.__version__}: jax.jit of the lax.while_loop model runs (loss {value:.12g}); "
          "jax.grad through it raises:")
    print(f"  {type(exc).__name__}: {str(exc).strip().splitlines()[0] if exc else 'nothing'}")
    return results


if __name__ == "__main__":
    main()
