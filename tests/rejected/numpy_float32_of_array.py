# expect: line=6 error="np.float32(...) of an array is not supported" hint="pass the array as float32 already"
import numpy as np


def model(x):
    return np.sum(np.float32(x) * 2.0)
