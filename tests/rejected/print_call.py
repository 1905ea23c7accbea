# expect: line=7 error="`print()` is not supported" hint="Print outside the model"
import numpy as np


def model(x):
    y = np.sum(x)
    print(y)
    return y
