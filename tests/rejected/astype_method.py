# expect: line=6 error="the array attribute or method `.astype` is not supported" hint="Supported:"
import numpy as np


def model(x):
    return np.sum(x.astype(np.float32))
