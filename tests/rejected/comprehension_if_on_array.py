# expect: line=6 error="a comprehension's `if` on an array value (t > 0) is not supported" hint="np.where(t > 0, a, b)"
import numpy as np


def model(x):
    kept = [t for t in x if t > 0]
    return np.sum(np.stack(kept))
