# expect: line=7 error="`h` is read before it is assigned in `step`" hint="Assign `h` first"
import numpy as np


def model(x):
    def step(t):
        t = t + h
        h = t * 2
        return h
    h = x
    return np.sum(step(x))
