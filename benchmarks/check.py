"""Checks every hand-written expert against the model it claims to differentiate.

For each workload: the expert forward and value_and_grad give the model's loss; the
gradients have their parameters' shapes (a Python float for a Python-float parameter); no input
is modified; and each gradient matches central finite differences of the model in float64 at a
few coordinates (all of them for scalars, the largest entry plus random ones for arrays).
Run: `python -m benchmarks.check`.
"""

import sys

import numpy as np

from benchmarks import control_flow
from benchmarks.workloads import WORKLOADS as STRAIGHT_LINE

WORKLOADS = STRAIGHT_LINE + control_flow.WORKLOADS     # W1-W6, then W7 (a while loop on values)

# |analytic - finite difference| <= RTOL * |analytic| + ATOL * max|gradient array|
RTOL = 1e-6
ATOL = 1e-8
STEP = 1e-5          # relative step: central differences lose ~step^2 to truncation


def _perturbed(args, index, coord, delta):
    args = list(args)
    if isinstance(args[index], float):
        args[index] = args[index] + delta
    else:
        array = args[index].copy()
        array[coord] += delta
        args[index] = array
    return args


def finite_difference(model, args, index, coord):
    """Central difference of model(*args) along one coordinate of argument `index`."""
    x = args[index] if coord is None else args[index][coord]
    h = STEP * max(1.0, abs(float(x)))
    up = float(model(*_perturbed(args, index, coord, h)))
    down = float(model(*_perturbed(args, index, coord, -h)))
    return (up - down) / (2.0 * h)


def _coordinates(grad, n_random, rng):
    if isinstance(grad, float):
        return [None]
    if grad.size <= n_random + 1:
        return list(np.ndindex(grad.shape))
    picks = [np.unravel_index(np.argmax(np.abs(grad)), grad.shape)]
    picks += [np.unravel_index(i, grad.shape)
              for i in rng.choice(grad.size, size=n_random, replace=False)]
    return [tuple(int(i) for i in c) for c in picks]


def check_workload(workload, n_random=4, seed=0):
    """Problems found with `workload`'s expert, as a list of strings (empty when it passes)."""
    rng = np.random.default_rng(seed)
    args = workload.make_inputs()
    before = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    problems = []

    reference = float(workload.model(*args))
    forward = float(workload.forward(*args))
    loss, grads = workload.value_and_grad(*args)
    for label, value in (("forward", forward), ("value_and_grad loss", float(loss))):
        if not abs(value - reference) <= 1e-12 * max(1.0, abs(reference)):
            problems.append(f"{label} {value!r} != model {reference!r}")
    for a, b in zip(args, before):
        if not (a is b or np.array_equal(a, b)):
            problems.append("an input was modified in place")

    if len(grads) != len(workload.wrt):
        return problems + [f"{len(grads)} gradients for wrt={workload.wrt}"]
    for name, index, grad in zip(workload.wrt, workload.wrt_indices, grads):
        param = args[index]
        if isinstance(param, float):
            if not isinstance(grad, float):
                problems.append(f"d_{name} is {type(grad).__name__}, expected float")
                continue
        elif np.shape(grad) != param.shape or np.asarray(grad).dtype != param.dtype:
            problems.append(f"d_{name} has shape {np.shape(grad)}, expected {param.shape}")
            continue
        scale = float(np.max(np.abs(grad)))
        for coord in _coordinates(grad, n_random, rng):
            analytic = float(grad if coord is None else grad[coord])
            numeric = finite_difference(workload.model, args, index, coord)
            if not abs(analytic - numeric) <= RTOL * abs(analytic) + ATOL * scale:
                where = name if coord is None else f"{name}{list(coord)}"
                problems.append(f"d_{where}: hand-written {analytic:.12g}, "
                                f"finite difference {numeric:.12g}")
    return problems


def main(argv=None):
    failed = 0
    for workload in WORKLOADS:
        problems = check_workload(workload)
        status = "ok" if not problems else "FAIL"
        print(f"{workload.name} {workload.title}: {status}")
        for problem in problems:
            print(f"    {problem}")
        failed += bool(problems)
    print(f"{len(WORKLOADS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
