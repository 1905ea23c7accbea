# expect: line=6 error="boolean-mask indexing (x[x > 0]) makes an array whose shape depends on the data" hint="np.where(mask, x, 0.0)"
import numpy as np


def model(x):
    return np.sum(x[x > 0])
