# expect: line=6 error="`open()` is not supported" hint="`symbackprop docs language`"
import numpy as np


def model(x):
    data = open("weights.txt")
    return np.sum(x)
