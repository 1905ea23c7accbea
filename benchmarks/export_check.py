"""The cost of an exported `.py` module's argument checks (docs/export.md).

Each public function of an exported module checks every argument before calling the generated
body. This times, per call of a model with 8 arguments of one kind, the checked `value_and_grad`
against the unchecked body `_value_and_grad` it calls (best of several repeats of timeit loops),
and the check helpers alone; the difference divided by 8 is the cost per argument (the target is
under 1 us). Run: `python -m benchmarks.export_check`; writes benchmarks/results/export_check.txt.
"""
import importlib.util
import tempfile
import timeit
from pathlib import Path

import numpy as np

import symbackprop as sb

N = 8
RESULT = Path(__file__).parent / "results" / "export_check.txt"


def arrays(a, b, c, d, e, f, g, h):
    return np.sum(a * b * c * d * e * f * g * h)


def floats(a, b, c, d, e, f, g, h):
    return a * b * c * d * e * f * g * h


def steering(x, a, b, c, d, e, f, g, h):
    return np.sum(x) * len((a, b, c, d, e, f, g, h))


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def best(fn, number=20000, repeat=7):
    """Seconds per call: the fastest of `repeat` timeit loops."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def main():
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = {
            "array (float64[4])": (arrays, [np.full(4, 0.9) for _ in range(N)], N),
            "float (Python float)": (floats, [0.9] * N, N),
            "steering value (int)": (steering, [np.ones(4)] + list(range(N)), N + 1),  # and one array
        }
        for label, (model, args, count) in cases.items():
            path = Path(tmp) / f"{model.__name__}.py"
            sb.value_and_grad(model, wrt=0).export(path, *args)
            module = _load(path)
            dynamic = [a for a in args if not isinstance(a, int)]
            checked, body = [], []
            for _ in range(15):  # interleaved, best of each: the machine may be shared
                checked.append(best(lambda: module.value_and_grad(*args), number=5000, repeat=1))
                body.append(best(lambda: module._value_and_grad(*dynamic), number=5000, repeat=1))
            checked, body = min(checked), min(body)
            per = (checked - body) / count
            lines.append(f"{label:22s} checked call {checked * 1e6:6.2f} us, body {body * 1e6:6.2f} us: "
                         f"{per * 1e9:5.0f} ns per argument ({count} arguments)")
        # the helpers alone, one call each
        module = _load(Path(tmp) / "arrays.py")
        x = np.ones(4)
        helper = best(lambda: module._array("x", x, (4,), module._float64), number=200000)
        empty = best(lambda: None, number=200000)
        lines.append(f"_array(...) alone: {(helper - empty) * 1e9:.0f} ns (a lambda calling nothing: "
                     f"{empty * 1e9:.0f} ns, subtracted)")
        module = _load(Path(tmp) / "floats.py")
        helper = best(lambda: module._float("x", 0.5), number=200000)
        lines.append(f"_float(...) alone: {(helper - empty) * 1e9:.0f} ns")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    RESULT.write_text(text)


if __name__ == "__main__":
    main()
