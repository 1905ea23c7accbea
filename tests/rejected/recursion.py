# expect: line=9 error="`power` calls itself (recursion)" hint="`for` loop"
import numpy as np


def power(x, n):
    if n == 0:
        return 1.0
    else:
        return x * power(x, n - 1)


def model(x):
    return np.sum(power(x, 3))
