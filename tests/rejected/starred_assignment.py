# expect: line=6 error="starred assignment is not supported" hint="fixed number of values"
import numpy as np


def model(x):
    first, *rest = x
    return np.sum(first)
