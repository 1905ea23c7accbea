# expect: line=6 error="`np.linalg.norm` is not supported" hint="np.sqrt(np.sum(w * w))"
import numpy as np


def model(w):
    return np.linalg.norm(w)
