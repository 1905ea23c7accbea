# expect: line=8 error="`h` is float32 before the `while` loop and float64 after an iteration" hint="final dtype"
# args: x=float32[3]
import numpy as np


def model(x):
    h = x
    while np.sum(h) < 10.0:
        h = h * np.float64(2.0)
    return np.sum(h)
