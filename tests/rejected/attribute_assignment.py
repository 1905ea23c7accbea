# expect: line=7 error="assigning to an attribute (`x.shape = ...`) is not supported" hint="local variable"
import numpy as np


def model(x):
    y = x * 2
    x.shape = (3,)
    return np.sum(y)
