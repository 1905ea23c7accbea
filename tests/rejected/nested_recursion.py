# expect: line=8 error="`down` calls itself (recursion)" hint="`for` loop"
import numpy as np


def model(x):
    def down(t, n):
        if n > 0:
            return down(t * 2, n - 1)
        return t
    return np.sum(down(x, 3))
