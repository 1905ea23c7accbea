"""Timing: verify each implementation against the hand-written gradient, then time it.

An `Impl` is one implementation of one workload. `measure_workload` checks each `Impl`'s
gradient against the hand-written expert's, times its first call (compilation, for the JITs),
then times forward and value_and_grad in interleaved rounds (every implementation once per
round, the order rotating) and keeps medians. `write_report` writes results.md, results.json and,
if matplotlib is importable, ratios.png. Threads are pinned by benchmarks/run.py before NumPy is
imported; importing this module directly does not pin them.
"""

import gc
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks import THREAD_ENV

# An implementation's loss and gradients must match the hand-written ones to this, relative to
# the largest entry of each gradient: far looser than round-off, far tighter than any real bug.
GRAD_RTOL = 1e-7

_reported = set()


def skip(message):
    """Print a one-line skip message, once per distinct message."""
    if message not in _reported:
        _reported.add(message)
        print(f"  skip: {message}", flush=True)


def as_numpy(result):
    """(loss, grads) from any implementation as (float, tuple of float64 arrays or floats)."""
    loss, grads = result
    return float(loss), tuple(np.asarray(g, dtype=np.float64) for g in grads)


@dataclass
class Impl:
    name: str
    value_and_grad: Callable          # called as value_and_grad(*args); must block until done
    forward: Callable                 # called as forward(*args)
    args: tuple                       # the workload's inputs, converted for this implementation
    to_numpy: Callable = as_numpy     # value_and_grad's result -> (float, tuple of arrays)
    build_seconds: float = 0.0        # time spent building value_and_grad, counted in first call


def hand_written_impl(workload):
    return Impl("hand-written", workload.value_and_grad, workload.forward, workload.make_inputs())


# --- symbackprop hook ------------------------------------------------------------------------
# The compiler's implementations join the tables here once `import symbackprop` works. Their
# forward column is the compiled forward pass of the same backend (`.forward`).

SYMBACKPROP_BACKENDS = ("numpy", "llvm")


def symbackprop_impls(workload):
    try:
        import symbackprop as sb
    except Exception as exc:      # not written yet, or broken: the other columns still run
        skip(f"symbackprop: import failed ({type(exc).__name__}: {exc})")
        return []
    if not hasattr(sb, "value_and_grad"):
        skip("symbackprop: imports, but has no value_and_grad yet")
        return []
    impls = []
    for backend in SYMBACKPROP_BACKENDS:
        start = time.perf_counter()
        try:
            value_and_grad = sb.value_and_grad(workload.model, wrt=workload.wrt, backend=backend)
        except Exception as exc:
            skip(f"symbackprop-{backend} on {workload.name}: {type(exc).__name__}: {exc}")
            continue
        impls.append(Impl(f"symbackprop-{backend}", value_and_grad, value_and_grad.forward,
                          workload.make_inputs(), build_seconds=time.perf_counter() - start))
    return impls
# ---------------------------------------------------------------------------------------------


def gradient_mismatch(result, reference):
    """Why `result` disagrees with `reference` (both from `as_numpy`), or None if it agrees."""
    loss, grads = result
    ref_loss, ref_grads = reference
    if not abs(loss - ref_loss) <= GRAD_RTOL * max(1.0, abs(ref_loss)):
        return f"loss {loss!r} != {ref_loss!r}"
    if len(grads) != len(ref_grads):
        return f"{len(grads)} gradients, expected {len(ref_grads)}"
    for i, (g, ref) in enumerate(zip(grads, ref_grads)):
        if g.shape != ref.shape:
            return f"gradient {i} has shape {g.shape}, expected {ref.shape}"
        error = float(np.max(np.abs(g - ref), initial=0.0))
        if not error <= GRAD_RTOL * float(np.max(np.abs(ref), initial=0.0)) + 1e-300:
            return f"gradient {i} differs by {error:.3g}"
    return None


def _describe(exc):
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


def _time_batch(fn, args, calls):
    """Seconds per call over `calls` back-to-back calls, the collector paused as timeit does."""
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(calls):
            fn(*args)
        return (time.perf_counter() - start) / calls
    finally:
        gc.enable()


def _calls_per_batch(fn, args, target_seconds):
    one = min(_time_batch(fn, args, 1) for _ in range(3))
    return max(1, min(100_000, round(target_seconds / max(one, 1e-9))))


@dataclass
class Measurement:
    impl: str
    first_call: float = None          # seconds to build and first call value_and_grad
    forward: list = field(default_factory=list)           # seconds per call, one per round
    value_and_grad: list = field(default_factory=list)
    error: str = None                 # why it was not timed

    def median(self, mode):
        samples = getattr(self, mode)
        return statistics.median(samples) if samples else None


def measure_workload(workload, impls, rounds=21, target_seconds=0.02):
    """Verify, then time, every implementation of one workload; a list of Measurements."""
    print(f"{workload.name}: {workload.title}", flush=True)
    # A full collection costs ~0.2 s once JAX and PyTorch are loaded; freezing what exists now
    # keeps the collections between batches cheap (the batches themselves run with gc paused).
    gc.collect()
    gc.freeze()
    reference = as_numpy(workload.value_and_grad(*workload.make_inputs()))
    measurements, timed = [], []
    for impl in impls:
        m = Measurement(impl.name)
        measurements.append(m)
        try:
            start = time.perf_counter()
            result = impl.value_and_grad(*impl.args)
            m.first_call = time.perf_counter() - start + impl.build_seconds
            # the first call and a cached one may take different paths: check both
            m.error = (gradient_mismatch(impl.to_numpy(result), reference)
                       or gradient_mismatch(impl.to_numpy(impl.value_and_grad(*impl.args)),
                                            reference))
            impl.forward(*impl.args)                 # compile the forward too, untimed
            if not m.error:
                batches = [(m, mode, getattr(impl, mode), impl.args,
                            _calls_per_batch(getattr(impl, mode), impl.args, target_seconds))
                           for mode in ("forward", "value_and_grad")]
        except Exception as exc:
            m.error = _describe(exc)
        if m.error:
            print(f"  {impl.name}: not timed: {m.error}", flush=True)
        else:
            timed += batches

    for r in range(rounds):
        shift = r % len(timed) if timed else 0
        for m, mode, fn, args, calls in timed[shift:] + timed[:shift]:
            if m.error:
                continue
            try:
                getattr(m, mode).append(_time_batch(fn, args, calls))
            except Exception as exc:                 # keep the other implementations going
                m.error = _describe(exc)
                print(f"  {m.impl}: failed while timed: {m.error}", flush=True)

    for m in measurements:
        if not m.error:
            print(f"  {m.impl:<18} forward {_fmt(m.median('forward')):>9}   value_and_grad "
                  f"{_fmt(m.median('value_and_grad')):>9}   first call {_fmt(m.first_call):>9}",
                  flush=True)
    return measurements


# --- report ----------------------------------------------------------------------------------

def _fmt(seconds):
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            break
    value = seconds / scale
    return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"


def ratios(measurements):
    """{impl: (value_and_grad / hand-written value_and_grad, value_and_grad / own forward)}."""
    by_name = {m.impl: m for m in measurements}
    hand = by_name.get("hand-written")
    hand_vg = hand.median("value_and_grad") if hand and not hand.error else None
    out = {}
    for m in measurements:
        vg, fwd = m.median("value_and_grad"), m.median("forward")
        if vg is None:
            continue
        out[m.impl] = (vg / hand_vg if hand_vg else None, vg / fwd if fwd else None)
    return out


def _versions(results):
    """Versions of Python, NumPy and the libraries behind the implementations in `results`."""
    families = {impl.split("-")[0] for impl in _impl_order(results)}
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("jax", "jaxlib", "torch", "autograd", "symbackprop"):
        if name in sys.modules and name.replace("jaxlib", "jax") in families:
            try:
                versions[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                versions[name] = getattr(sys.modules[name], "__version__", "unversioned")
    return versions


def _fmt_ratio(ratio):
    if ratio is None:
        return "-"
    return f"{ratio:.2f}" if ratio < 10 else f"{ratio:.1f}" if ratio < 100 else f"{ratio:.0f}"


def _impl_order(results):
    order = []
    for _, measurements in results:
        for m in measurements:
            if m.impl not in order:
                order.append(m.impl)
    return order


def _markdown(results, settings):
    names = _impl_order(results)
    lines = [
        "# symbackprop benchmarks",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, {os.cpu_count()} cores, "
        + ", ".join(f"{k} {v}" for k, v in _versions(results).items()) + ".",
        f"One thread ({', '.join(f'{k}={v}' for k, v in THREAD_ENV.items())}"
        + (f"; process pinned to core {settings['pinned_core']}"
           if settings.get("pinned_core") is not None else "; process not pinned")
        + ("; malloc keeps freed memory" if settings.get("keep_memory") else "")
        + f"); medians over "
        f"{settings['rounds']} interleaved rounds of ~{settings['target_seconds'] * 1e3:.0f} ms "
        "batches. Every implementation's loss and gradients were checked against the "
        "hand-written ones before timing.",
        "",
        "## Times per call",
        "",
        "| workload | implementation | forward | value_and_grad | first call |",
        "|---|---|---:|---:|---:|",
    ]
    notes = []
    for workload, measurements in results:
        for m in measurements:
            if m.error:
                notes.append(f"- {workload.name} {m.impl}: not timed: {m.error}")
                continue
            lines.append(f"| {workload.name} | {m.impl} | {_fmt(m.median('forward'))} | "
                         f"{_fmt(m.median('value_and_grad'))} | {_fmt(m.first_call)} |")
    for title, which in (("value_and_grad / hand-written value_and_grad", 0),
                         ("value_and_grad / forward of the same implementation", 1)):
        lines += ["", f"## {title}", "",
                  "| workload | " + " | ".join(names) + " |",
                  "|---|" + "---:|" * len(names)]
        for workload, measurements in results:
            r = ratios(measurements)
            cells = [_fmt_ratio(r[n][which]) if n in r else "-" for n in names]
            lines.append(f"| {workload.name} | " + " | ".join(cells) + " |")
    work = [(w.name, product_work(w)) for w, _ in results]
    if any(ratio for _, ratio in work):
        lines += ["", "## Matrix-product work, value_and_grad / forward", "",
                  "Multiply-adds of the matrix products in symbackprop's value_and_grad graph over "
                  "those of its forward part (counted from the compiled IR). Each product's backward "
                  "needs one or two products of its size, so where the products' arithmetic "
                  "dominates the time, value_and_grad / forward of any reverse mode is near this "
                  "ratio or above it (W3's products are bound by memory instead: one pass over X "
                  "can serve both).", "",
                  "| workload | multiply-adds, forward | value_and_grad / forward |", "|---|---:|---:|"]
        lines += [f"| {name} | {forward:,} | {total / forward:.2f} |" for name, (forward, total) in
                  ((n, r) for n, r in work if r)]
    lines += ["", "## Workloads", ""]
    lines += [f"- {w.name}: {w.title}; wrt {', '.join(w.wrt)}" for w, _ in results]
    if notes:
        lines += ["", "## Not timed", ""] + notes
    return "\n".join(lines) + "\n"


def product_work(workload):
    """(multiply-adds of the forward's matrix products, of value_and_grad's), or None without products."""
    try:
        import symbackprop as sb
        compiled = sb.value_and_grad(workload.model, wrt=workload.wrt).specialise(*workload.make_inputs())
    except Exception:
        return None
    forward = total = 0
    for node in compiled.graph.nodes:
        if node.prim.name not in ("matmul", "outer"):
            continue
        out = node.outputs[0]
        k = 1 if node.prim.name == "outer" else node.inputs[0].shape[-1]
        count = int(np.prod(out.shape, dtype=np.int64)) * k
        total += count
        if node in compiled.forward_nodes:
            forward += count
    return (forward, total) if forward else None


def _plot(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as exc:
        print(f"no chart: matplotlib is not importable ({type(exc).__name__}: {exc})")
        return None
    names = _impl_order(results)
    labels = [w.name for w, _ in results]
    table = [ratios(measurements) for _, measurements in results]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    width = 0.8 / max(1, len(names))
    for which, ax, title in ((0, axes[0], "value_and_grad / hand-written value_and_grad"),
                             (1, axes[1], "value_and_grad / forward (same implementation)")):
        for k, name in enumerate(names):
            xs = [i + (k - (len(names) - 1) / 2) * width for i in range(len(labels))]
            ys = [r[name][which] if name in r and r[name][which] else np.nan for r in table]
            ax.bar(xs, ys, width, label=name)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(labels)), labels)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("ratio (log scale)")
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(results, out_dir, settings):
    """Write results.md, results.json and ratios.png (if matplotlib imports) into out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.md").write_text(_markdown(results, settings), encoding="utf-8")
    raw = {"settings": settings, "versions": _versions(results), "workloads": {
        w.name: [{"impl": m.impl, "error": m.error, "first_call": m.first_call,
                  "forward": m.forward, "value_and_grad": m.value_and_grad}
                 for m in measurements] for w, measurements in results}}
    (out_dir / "results.json").write_text(json.dumps(raw, indent=1), encoding="utf-8")
    written = [out_dir / "results.md", out_dir / "results.json"]
    chart = _plot(results, out_dir / "ratios.png")
    return written + ([chart] if chart else [])
