# expect: line=6 error="`assert` on an array value is not supported" hint="known at compile time"
import numpy as np


def model(x):
    assert x > 0
    return np.sum(np.log(x))
