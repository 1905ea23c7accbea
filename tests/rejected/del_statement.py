# expect: line=7 error="`del` is not supported" hint="stop using the name"
import numpy as np


def model(x):
    y = x * 2
    del y
    return np.sum(x)
