# expect: line=6 error="`np.arange` is not supported" hint="`for i in range(n)`"
import numpy as np


def model(x):
    return np.sum(x * np.arange(3))
