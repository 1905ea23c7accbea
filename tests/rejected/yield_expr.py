# expect: line=6 error="`yield` is not supported" hint="one scalar"
import numpy as np


def model(x):
    yield np.sum(x)
    return np.sum(x)
