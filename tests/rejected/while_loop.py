# expect: line=8 error="a `while` loop is not supported" hint="for i in range(n)"
import numpy as np


def model(x):
    s = np.sum(x)
    i = 0
    while i < 3:
        s = s * 2
        i += 1
    return s
