# expect: line=7 error="`range()` needs values known at compile time" hint="x.shape[0]"
import numpy as np


def model(x):
    total = 0.0
    for i in range(np.sum(x)):
        total = total + i
    return total
