# expect: line=6 error="`np.cumprod` is not supported" hint="Multiply in a `for` loop"
import numpy as np


def model(x):
    return np.sum(np.cumprod(x))
