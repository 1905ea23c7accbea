# expect: line=7 error="np.dot of arrays with more than 2 dimensions is not supported" hint="a @ b (np.matmul)"
# args: x=float64[2,3,4] W=float64[4,2]
import numpy as np


def model(x, W):
    return np.sum(np.dot(x, W))
