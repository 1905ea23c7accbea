# expect: line=7 error="assigning to an element or slice (`y[1:] op= ...`) is not supported" hint="immutable"
import numpy as np


def model(x):
    y = x * 2
    y[1:] += 1.0
    return np.sum(y)
