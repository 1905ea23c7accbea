# expect: line=6 error="`np.sum(..., dtype=...)` is not supported" hint="Remove `dtype=`"
import numpy as np


def model(x):
    return np.sum(x, dtype=np.float32)
