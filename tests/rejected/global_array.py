# expect: line=9 error="the global array `W` cannot be used inside a model" hint="parameter"
import numpy as np

W = np.ones((3, 3))


def model(x):
    y = x * 2
    return np.sum(W @ y)
