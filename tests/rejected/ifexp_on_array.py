# expect: line=6 error="on an array value is not supported" hint="np.where(x > 0, a, b)"
import numpy as np


def model(x):
    y = x if x > 0 else -x
    return np.sum(y)
