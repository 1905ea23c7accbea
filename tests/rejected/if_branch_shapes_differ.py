# expect: line=7 error="`y` would have shape () after one branch and (3,) after the other" hint="np.zeros_like"
import numpy as np


def model(x):
    y = x
    if np.sum(x) > 0:
        y = np.sum(x * x)
    return np.sum(y)
