# expect: line=6 error="a generator expression is not supported" hint="for` loop"
import numpy as np


def model(x):
    return sum(np.sum(x * i) for i in range(3))
