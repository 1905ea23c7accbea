# expect: line=8 error="`raise` is not supported" hint="before calling"
# args: x=float64[3] n=3
import numpy as np


def model(x, n):
    if n < 0:
        raise ValueError("n")
    return np.sum(x) * n
