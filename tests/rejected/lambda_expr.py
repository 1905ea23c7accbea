# expect: line=6 error="a lambda is not supported" hint="module-level function"
import numpy as np


def model(x):
    f = lambda t: t * 2
    return np.sum(f(x))
