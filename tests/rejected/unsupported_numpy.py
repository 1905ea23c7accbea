# expect: line=6 error="`np.cumsum` is not supported" hint="docs/language.md"
import numpy as np


def model(x):
    return np.sum(np.cumsum(x))
