# expect: line=7 error="`for ... else` is not supported" hint="Remove the `else` block"
import numpy as np


def model(x):
    total = 0.0
    for i in range(3):
        total = total + np.sum(x) * i
    else:
        total = total * 2
    return total
