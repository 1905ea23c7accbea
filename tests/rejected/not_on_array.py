# expect: line=6 error="`not` on an array is not supported" hint="~(condition)"
import numpy as np


def model(x):
    keep = not (x > 0)
    return np.sum(np.where(keep, x, 0.0))
