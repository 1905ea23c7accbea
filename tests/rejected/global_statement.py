# expect: line=8 error="`global` is not supported" hint="parameter"
import numpy as np

SCALE = 2.0


def model(x):
    global SCALE
    return np.sum(x) * SCALE
