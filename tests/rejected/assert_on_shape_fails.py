# expect: line=6 error="assertion failed: the model takes a matrix" kind=ValueError
import numpy as np


def model(x):
    assert x.ndim == 2, "the model takes a matrix"
    return np.sum(x)
