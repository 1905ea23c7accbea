# expect: line=6 error="`//` on arrays is not supported" hint="+ - * / ** @"
import numpy as np


def model(x):
    return np.sum(x // 2)
