# expect: line=6 error="this array's bounds must be numbers known at specialisation" hint="x.shape[0]"
import numpy as np


def model(x):
    return np.sum(x * np.arange(np.sum(x)))
