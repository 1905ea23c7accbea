"""sb.check_grad: the compiled gradient against central finite differences of the model run as plain NumPy.

The numbers it compares against never come from the compiler: the model is an
ordinary Python function, so it is called directly, in float64, at x + h and
x - h for each probed entry (h = step * max(1, |x|)). The report is truthy when
every probed entry agrees within `atol + rtol * |numeric|`, and prints the worst
entries of each parameter.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import backends
from .api import GradFunction
from .pipeline.specialiser import resolve_wrt

#: central-difference step, relative to max(1, |x|): about the cube root of float64's epsilon, so that
#: truncation (h**2) and rounding (eps/h) errors are of one size, near 1e-11 relative
STEP = 6e-6
#: tolerances by the parameter's dtype: a float32 gradient is computed in float32
TOLERANCES = {np.dtype(np.float64): (1e-5, 1e-7), np.dtype(np.float32): (2e-3, 1e-4),
              np.dtype(np.float16): (3e-2, 3e-2)}


@dataclass
class Entry:
    index: tuple
    compiled: float
    numeric: float

    @property
    def error(self) -> float:
        return abs(self.compiled - self.numeric)


@dataclass
class ParameterCheck:
    """One parameter's comparison: the probed entries, worst first."""

    name: str
    shape: tuple
    rtol: float
    atol: float
    probed: int
    entries: list = field(default_factory=list)   # every probed Entry, worst first

    @property
    def failures(self) -> list:
        return [e for e in self.entries if not e.error <= self.atol + self.rtol * abs(e.numeric)]

    @property
    def max_abs_error(self) -> float:
        return max((e.error for e in self.entries), default=0.0)

    def __bool__(self):
        return not self.failures


@dataclass
class GradCheck:
    """The report of sb.check_grad: truthy when every parameter agrees."""

    model: str
    parameters: list

    def __bool__(self):
        return all(self.parameters)

    def __str__(self):
        lines = [f"check_grad({self.model}): {'gradients agree' if self else 'GRADIENTS DISAGREE'} "
                 "with central finite differences (float64)"]
        for p in self.parameters:
            verdict = "ok" if p else f"{len(p.failures)} of {p.probed} probed entries disagree"
            lines.append(f"  {p.name}{list(p.shape)}: {verdict}; max |compiled - numeric| = {p.max_abs_error:.3g} "
                         f"(rtol {p.rtol:g}, atol {p.atol:g}, {p.probed} entries probed)")
            for e in p.entries[:3]:
                where = "" if not p.shape else str(list(e.index))
                lines.append(f"      {p.name}{where}: compiled {e.compiled:+.10g}, numeric {e.numeric:+.10g}, "
                             f"error {e.error:.3g}")
        return "\n".join(lines)

    __repr__ = __str__


def check_grad(f, *args, wrt=None, backend=None, rtol=None, atol=None, max_entries=64, seed=0, has_aux=None,
               **kwargs):
    """Compare f's compiled gradient at `args` with central finite differences in float64.

    `f` is a model or an sb.grad / sb.value_and_grad function (its wrt, backend and has_aux are then the
    defaults; otherwise the default backend, NumPy). Each parameter in `wrt` is probed at every entry, or at `max_entries` entries drawn
    with `seed` when it has more. `rtol`/`atol` default by the parameter's dtype (TOLERANCES).
    With has_aux=True the model returns (loss, aux) and the loss is checked.
    """
    if isinstance(f, GradFunction):
        if wrt is None:
            wrt = tuple(f.params[i] for i in f.wrt) if not f.single else f.params[f.wrt[0]]
        backend = f.backend if backend is None else backend
        has_aux = f.has_aux if has_aux is None else has_aux
        f = f.fn
    has_aux = bool(has_aux)
    gradient = GradFunction(f, wrt=wrt, backend=backend or backends.DEFAULT, with_value=False, has_aux=has_aux)
    args = gradient.specialiser.arguments(args, kwargs)
    indices, single = resolve_wrt(gradient.params, wrt)
    grads = gradient(*args)
    if has_aux:
        grads = grads[0]
    grads = (grads,) if single else tuple(grads)
    rng = np.random.default_rng(seed)
    loss = (lambda *a: f(*a)[0]) if has_aux else f
    checks = []
    for index, g in zip(indices, grads):
        checks.append(_check_parameter(loss, args, index, gradient.params[index], np.asarray(g), rng, rtol, atol,
                                       max_entries))
    return GradCheck(f.__name__, checks)


def _check_parameter(f, args, index, name, compiled, rng, rtol, atol, max_entries):
    x = args[index]
    default_rtol, default_atol = TOLERANCES.get(compiled.dtype, TOLERANCES[np.dtype(np.float64)])
    base = np.array(x, dtype=np.float64)
    flat = base.reshape(-1)
    probe = np.arange(flat.size)
    if flat.size > max_entries:
        probe = np.sort(rng.choice(flat.size, max_entries, replace=False))
    entries = []
    for i in probe:
        h = STEP * max(1.0, abs(flat[i]))
        values = []
        for step in (h, -h):
            moved = flat.copy()
            moved[i] += step
            call = list(args)
            call[index] = float(moved[0]) if isinstance(x, float) else moved.reshape(base.shape)
            with np.errstate(all="ignore"):  # plain NumPy may warn on a branch np.where does not take
                values.append(float(f(*call)))
        numeric = (values[0] - values[1]) / (2 * h)
        position = tuple(int(k) for k in np.unravel_index(i, base.shape)) if base.shape else ()
        entries.append(Entry(position, float(compiled.reshape(-1)[i]), numeric))
    check = ParameterCheck(name, base.shape, default_rtol if rtol is None else rtol,
                           default_atol if atol is None else atol, len(probe))
    # worst first: by how far past its tolerance each entry is
    check.entries = sorted(entries, key=lambda e: -(e.error / (check.atol + check.rtol * abs(e.numeric))))
    return check
