# expect: line=6 error="`np.tahn` is not supported" hint="np.tanh"
import numpy as np


def model(x):
    return np.sum(np.tahn(x))
