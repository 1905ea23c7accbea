# expect: line=7 error="assigning into `y[0][1]` is not supported" hint="y[i, j] = v"
import numpy as np


def model(x):
    y = x * 2
    y[0][1] = 0.0
    return np.sum(y)
