# expect: line=6 error="`np.median` is not supported" hint="symbackprop docs language"
import numpy as np


def model(x):
    return np.sum(np.median(x) * x)
