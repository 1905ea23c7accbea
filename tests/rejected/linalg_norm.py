# expect: line=6 error="np.linalg.norm(..., ord=3) of a vector is not supported" hint="ord=None, 2, 1 or np.inf"
import numpy as np


def model(w):
    return np.linalg.norm(w, ord=3)
