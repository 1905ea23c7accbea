# expect: line=5 error="`*rest` parameters are not supported" hint="by name"
import numpy as np


def model(x, *rest):
    return np.sum(x)
