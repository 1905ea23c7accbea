# expect: line=8 error="`y` is shared: `z` holds it too, and NumPy would change that as well" hint="y = y.copy()"
import numpy as np


def model(x):
    y = x * 2
    z = y
    y[0] = 0.0
    return np.sum(y * z)
