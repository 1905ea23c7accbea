# expect: line=8 error="`y` is shared: `top` holds a view of it" hint="y = y.copy()"
import numpy as np


def model(x):
    y = x * 2
    top = y[:1]
    y[0] = 0.0
    return np.sum(y) + np.sum(top)
