# expect: line=6 error="`with` is not supported" hint="context managers"
import numpy as np


def model(x):
    with np.errstate(all="ignore"):
        y = np.log(x)
    return np.sum(y)
