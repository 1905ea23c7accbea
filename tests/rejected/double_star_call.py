# expect: line=10 error="`**` unpacking in a call is not supported" hint="one by one"
import numpy as np


def helper(x, scale=1.0):
    return x * scale


def model(x):
    return np.sum(helper(x, **x))
