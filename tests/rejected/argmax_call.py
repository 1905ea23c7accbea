# expect: line=6 error="`np.argmax` is not supported" hint="x == np.max(x, axis=-1, keepdims=True)"
import numpy as np


def model(x):
    return np.sum(x * np.argmax(x))
