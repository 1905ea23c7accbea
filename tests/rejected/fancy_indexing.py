# expect: line=6 error="indexing with an array (fancy or boolean indexing) is not supported" hint="np.where(mask, x, 0.0)"
import numpy as np


def model(x):
    return np.sum(x[x > 0])
