# expect: line=7 error="`if` on an array value (x > 0) is not supported" hint="np.where(x > 0, a, b)"
import numpy as np


def model(x):
    y = np.sum(x)
    if x > 0:
        y = y * 2
    return y
