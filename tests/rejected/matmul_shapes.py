# expect: line=7 error="matmul: inner dimensions of (3,) and (4, 2) do not match" kind=ValueError
# args: x=float64[3] W=float64[4,2]
import numpy as np


def model(x, W):
    return np.sum(x @ W)
