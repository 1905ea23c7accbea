"""float32 against bfloat16 (and float16) compute on W4 and W6 (issue 18): time and error against float64.

For each workload and backend: sb.value_and_grad on the inputs in float32, bfloat16 and float16, and
sb.train_step (SGD) in float32 against compute_dtype="bfloat16" / "float16" on float32 master parameters (W6 has
float64 scalars, np.sqrt(2/pi) and np.sqrt(d), so parts of it are float64 in every row, as in NumPy). Errors are
relative to float64 (NumPy backend) on the workload's float64 inputs (a 16-bit row's includes rounding the
inputs): the loss's, and the gradients' as one vector (norm of the difference over the norm). Times are seconds
per call, best of alternating rounds (the machine is shared: the ratios, measured side by side, are the numbers
to read).
Run: `python -m benchmarks.precision`; writes benchmarks/results/precision.txt.
"""
import timeit
from pathlib import Path

import ml_dtypes
import numpy as np

import symbackprop as sb

from .workloads import get as workload

RESULT = Path(__file__).parent / "results" / "precision.txt"
DTYPES = {"float32": np.dtype(np.float32), "bfloat16": np.dtype(ml_dtypes.bfloat16),
          "float16": np.dtype(np.float16)}


def interleaved(fns, number, rounds=15):
    """Best seconds per call of each function, one timeit loop of each per round (the same load for all)."""
    times = [[] for _ in fns]
    for _ in range(rounds):
        for t, fn in zip(times, fns):
            t.append(timeit.timeit(fn, number=number) / number)
    return [min(t) for t in times]


def errors(result, reference):
    """(relative error of the loss, of all gradients as one vector) against the float64 reference."""
    (loss, grads), (ref_loss, ref_grads) = result, reference
    loss_error = abs(float(loss) - float(ref_loss)) / abs(float(ref_loss))
    flat = np.concatenate([np.asarray(g, np.float64).ravel() for g in grads])
    ref = np.concatenate([np.asarray(g, np.float64).ravel() for g in ref_grads])
    return loss_error, float(np.linalg.norm(flat - ref) / np.linalg.norm(ref))


def calls_for(fn, target=0.05):
    seconds = timeit.timeit(fn, number=1)
    return max(1, int(target / max(seconds, 1e-6)))


def run_workload(name, lines):
    w = workload(name)
    args64 = w.make_inputs()
    wrt = w.wrt
    reference = sb.value_and_grad(w.model, wrt=wrt)(*args64)
    lines.append(f"{w.name}: {w.title}")
    for backend in ("numpy", "llvm"):
        fns, rows = [], []
        for label, dtype in DTYPES.items():
            args = [a.astype(dtype) if isinstance(a, np.ndarray) else a for a in args64]
            f = sb.value_and_grad(w.model, wrt=wrt, backend=backend)
            result = f(*args)
            rows.append((label, errors(result, reference)))
            fns.append(lambda f=f, args=args: f(*args))
        number = calls_for(fns[0])
        times = interleaved(fns, number)
        base_time, (base_loss, base_grad) = times[0], rows[0][1]
        lines.append(f"  {backend:5s} value_and_grad      time (ms)  /float32   loss error  /float32   grad error  /float32")
        for (label, (le, ge)), t in zip(rows, times):
            lines.append(f"        {label:9s}          {t * 1e3:9.3f}  {t / base_time:8.2f}   {le:10.2e}  "
                         f"{le / max(base_loss, 1e-300):8.3g}   {ge:10.2e}  {ge / base_grad:8.3g}")
        steps, masters = [], []
        for label in DTYPES:
            params = [a.astype(np.float32) if isinstance(a, np.ndarray) else a for a in args64]
            step = sb.train_step(w.model, sb.optim.SGD(lr=1e-6), wrt=wrt, backend=backend,
                                 compute_dtype=None if label == "float32" else label)
            step(*params)
            steps.append(lambda step=step, params=params: step(*params))
            masters.append(label)
        step_times = interleaved(steps, calls_for(steps[0]))
        lines.append(f"  {backend:5s} train_step (SGD, float32 master parameters)   time (ms)  /float32")
        for label, t in zip(masters, step_times):
            lines.append(f"        compute {label:9s}                       {t * 1e3:9.3f}  {t / step_times[0]:8.2f}")


def main():
    lines = ["float32 vs bfloat16 / float16 compute; errors relative to float64 on the float64 inputs; seconds per "
             "call, best of 15 interleaved rounds (machine shared with other sessions: read the ratios)"]
    for name in ("W4", "W6"):
        run_workload(name, lines)
    text = "\n".join(lines) + "\n"
    print(text, end="")
    RESULT.write_text(text)
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
