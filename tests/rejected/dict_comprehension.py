# expect: line=6 error="a dict comprehension is not supported" hint="for` loop"
import numpy as np


def model(x):
    d = {i: x for i in range(2)}
    return np.sum(d[0])
