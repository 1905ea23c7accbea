# expect: line=6 error="`or` on array values is not supported" hint="(a > 0) | (b > 0)"
import numpy as np


def model(x):
    mask = (x > 0.5) or (x < -0.5)
    return np.sum(np.where(mask, x, 0.0))
