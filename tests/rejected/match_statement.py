# expect: line=7 error="`match` is not supported" hint="`if` on values known at compile time"
# args: x=float64[3] n=2
import numpy as np


def model(x, n):
    match n:
        case 1:
            return np.sum(x)
        case _:
            return np.sum(x * x)
