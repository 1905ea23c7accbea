# expect: line=5 error="`**options` parameters are not supported" hint="`def model(x, w, scale=1.0)`"
import numpy as np


def model(x, w, **options):
    return np.sum(x * w)
