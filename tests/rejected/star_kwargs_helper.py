# expect: line=5 error="`**options` parameters are not supported" hint="by name"
import numpy as np


def helper(x, **options):
    return x * 2


def model(x):
    return np.sum(helper(x))
