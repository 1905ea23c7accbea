# expect: line=6 error="`&` needs boolean arrays (comparisons), got float64[3]" hint="(x > 0) & (x < 1)"
import numpy as np


def model(x):
    return np.sum(np.where(x & (x > 0), x, 0.0))
