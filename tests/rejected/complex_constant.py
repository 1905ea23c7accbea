# expect: line=6 error="the constant 1j is not supported"
import numpy as np


def model(x):
    return np.sum(x * 1j)
