# expect: line=8 error="changes a list made outside the `if` or `while` on array values" hint="change it outside"
import numpy as np


def model(x):
    hs = [x]
    if np.sum(x) > 0:
        hs.append(x * 2.0)
    return np.sum(np.stack(hs))
