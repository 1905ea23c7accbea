# expect: line=6 error="`and` on array values is not supported" hint="(a > 0) & (b > 0)"
import numpy as np


def model(x):
    m = (x > 0) and (x < 1)
    return np.sum(np.where(m, x, 0.0))
