# expect: line=6 error="`np.sort` is not supported" hint="symbackprop docs language"
import numpy as np


def model(x):
    return np.sum(np.sort(x) * x)
