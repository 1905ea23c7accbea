"""What to write instead of a name the language does not have.

Guessing by spelling alone proposes `np.arctan` for `np.arange` and `np.amax` for
`np.argmax`: names that look alike and mean something else. A hint here is one of
- a rewrite into functions the language accepts, for the functions people reach
  for (`np.linalg.norm(w)` is `np.sqrt(np.sum(w * w))`), from the tables below;
- for a name the module does not have at all (a typo: `np.tahn`), the accepted
  names one or two edits away (a letter changed, added, dropped, or two swapped).
A real function of the module that is not in the tables gets no guess: it is a
different function, whatever its spelling.

Every `np.`/`math.` name a rewrite mentions must be accepted (tests/test_suggest.py).
"""
from __future__ import annotations

DOCS_HINT = "`symbackprop docs language` lists what a model can use."

_RANDOM = "Randomness is not part of a model: draw the arrays outside it and pass them as parameters."
_NAN = ("A model cannot test for NaN (SymPy takes x == x to be True): replace NaNs outside it and pass a "
        "0/1 mask as a parameter, then np.sum(mask * x) / np.sum(mask).")
_STEP = ("It is piecewise constant (its gradient is zero where it exists): compute it outside the model "
         "and pass the result as a parameter.")

#: np.<name> -> what to write instead (keys may be dotted: "linalg.norm")
NUMPY = {
    # reductions and statistics
    "average": "Write np.sum(w * x) / np.sum(w) for weights w, or np.mean(x).",
    "nansum": _NAN, "nanmean": _NAN, "nanmax": _NAN, "nanmin": _NAN,
    # products
    "vdot": "Write np.sum(a * b).",
    "linalg.multi_dot": "Write a @ b @ c.",
    # elementwise functions with a short formula
    "cbrt": "Write np.sign(x) * np.abs(x) ** (1 / 3).",
    "sinc": "Write np.where(x != 0, np.sin(np.pi * x) / (np.pi * x), 1.0).",
    "floor": _STEP, "ceil": _STEP, "round": _STEP, "rint": _STEP, "trunc": _STEP, "fix": _STEP,
    # shapes
    "ravel": "Write x.ravel() or np.reshape(x, (x.size,)).",
    "vstack": "Write np.concatenate([a, b], axis=0) (2-d arrays; 1-d ones: np.stack([a, b])).",
    "hstack": "Write np.concatenate([a, b], axis=1) (2-d arrays; 1-d ones: np.concatenate([a, b])).",
    "column_stack": "Write np.stack([a, b], axis=1).",
    # making arrays
    "asarray": "Arrays need no conversion; collect several with np.stack([a, b]), pass constant ones as parameters.",
    # names that are not NumPy's but are often tried
    "sigmoid": "Write 1 / (1 + np.exp(-x)) (recognised as the sigmoid: its derivative is s*(1 - s)).",
    "relu": "Write np.maximum(x, 0).",
    "softplus": "Write np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))) (recognised as the stable softplus).",
    "softmax": ("Write e = np.exp(z - np.max(z, axis=-1, keepdims=True)), then e / np.sum(e, axis=-1, keepdims=True) "
                "(recognised as the softmax)."),
    "logsumexp": ("Write m = np.max(z, axis=-1, keepdims=True), then m + np.log(np.sum(np.exp(z - m), axis=-1, "
                  "keepdims=True)) (recognised as logsumexp)."),
    "erf": "Not supported; the tanh form of GELU, 0.5*x*(1 + np.tanh(0.7978845608*(x + 0.044715*x**3))), avoids it.",
}
NUMPY_MODULES = {
    "random": _RANDOM,
    "linalg": ("Of np.linalg, norm, solve, inv, det, slogdet, cholesky, eigh, eigvalsh, pinv and matrix_power are "
               "supported (svd and eig are not: no adjoint yet); write products with @ and np.einsum."),
    "fft": "Fourier transforms are not supported.",
}

#: math.<name> -> what to write instead
MATH = {
    "log2": "Write math.log(x) / math.log(2).",
    "log10": "Write math.log(x) / math.log(10).",
    "hypot": "Write math.sqrt(a * a + b * b).",
    "fsum": "Write sum(...) or add the terms with +.",
    "prod": "Multiply in a `for` loop.",
    "floor": _STEP, "ceil": _STEP, "trunc": _STEP,
    "erf": "Not supported; the tanh form of GELU, 0.5*x*(1 + math.tanh(0.7978845608*(x + 0.044715*x**3))), avoids it.",
    "degrees": "Write x * (180 / math.pi).",
    "radians": "Write x * (math.pi / 180).",
}

#: x.<method> -> what to write instead
METHODS = {
    "round": _STEP,
    "item": "Keep the value an array: a 0-d array acts as a number (x.item() would leave the model's graph).",
    "tolist": "Keep arrays: index them (x[0]) or loop over their first axis.",
    "astype": "Leave dtypes to the inputs: pass the array in the dtype you want.",
}

#: np.<reduction> of a list -> the stacked form, and the elementwise one
LIST_ARGUMENTS = {
    "np.sum": ("np.sum(np.stack([a, b]))", "a + b"),
    "np.mean": ("np.mean(np.stack([a, b]))", "(a + b) / 2"),
    "np.max": ("np.max(np.stack([a, b]))", "np.maximum(a, b)"),
    "np.amax": ("np.amax(np.stack([a, b]))", "np.maximum(a, b)"),
    "np.min": ("np.min(np.stack([a, b]))", "np.minimum(a, b)"),
    "np.amin": ("np.amin(np.stack([a, b]))", "np.minimum(a, b)"),
}


def edit_distance(a: str, b: str, limit: int) -> int:
    """The optimal string alignment distance (substitutions, insertions, deletions, adjacent swaps),
    or limit + 1 when it exceeds `limit`."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous, current = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        before, previous, current = previous, current, [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], before[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
    return current[-1]


def typo_matches(name: str, accepted) -> list:
    """Accepted names `name` is a slip of the keyboard away from: one edit for names of up to six
    letters, two for longer ones, nearest first."""
    limit = 1 if len(name) <= 6 else 2
    # nearest first; of equally near ones, a swap or a changed letter (tahn: tanh) before a dropped one (tan)
    found = sorted((edit_distance(name.lower(), c.lower(), limit), abs(len(c) - len(name)), c)
                   for c in accepted if c != name)
    return [c for d, _, c in found if d <= limit][:3]


def module_hint(module: str, attr: str, accepted, exists: bool) -> str:
    """The hint for `module.attr` (module "np" or "math"), which the language does not accept.

    `exists`: whether the real module has that attribute (then it is another function, never a typo).
    """
    table = NUMPY if module == "np" else MATH if module == "math" else {}
    rewrite = table.get(attr)
    if rewrite is None and module.startswith("np."):  # np.linalg.norm, np.random.normal
        rewrite = NUMPY.get(f"{module[3:]}.{attr}") or NUMPY_MODULES.get(module[3:])
    if rewrite is not None:
        return f"{rewrite}\n  {DOCS_HINT}"
    if not exists:
        close = typo_matches(attr, accepted)
        if close:
            return f"Did you mean {', '.join(f'{module}.{c}' for c in close)}?\n  {DOCS_HINT}"
    return DOCS_HINT


def method_hint(attr: str, accepted) -> str | None:
    """A rewrite for the array method `.attr`, or the accepted methods it is a typo of; None if neither."""
    if attr in METHODS:
        return METHODS[attr]
    close = typo_matches(attr, accepted)
    return f"Did you mean {', '.join('.' + c for c in close)}?" if close else None


def name_hint(name: str, known) -> str | None:
    """For an undefined bare name: a rewrite of a function people expect (softplus, relu), or the
    names in scope it is a typo of (as Python's own NameError suggests)."""
    if name in NUMPY and "." not in name:
        return NUMPY[name]
    close = typo_matches(name, [k for k in known if not k.startswith("__")])
    return f"Did you mean {', '.join(f'`{c}`' for c in close)}?" if close else None
