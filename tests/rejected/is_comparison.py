# expect: line=6 error="`Is` comparison of arrays is not supported" hint="<, <=, >, >=, == or !="
import numpy as np


def model(x, y):
    same = x is y
    return np.sum(x * y) if same else np.sum(x)
