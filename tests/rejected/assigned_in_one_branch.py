# expect: line=9 error="`z` is assigned on some paths through the value-dependent `if` at line 6 only" hint="Assign `z` before the `if`"
import numpy as np


def model(x):
    if np.sum(x) > 0:
        z = x * 2.0
    y = np.sum(x)
    return y + np.sum(z)
