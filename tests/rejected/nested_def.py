# expect: line=6 error="a nested function is not supported" hint="module-level functions"
import numpy as np


def model(x):
    def double(t):
        return t * 2
    return np.sum(double(x))
