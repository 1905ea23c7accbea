# expect: line=6 error="name `softplus` is not defined" hint="np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))"
import numpy as np


def model(x):
    return np.sum(softplus(x))
