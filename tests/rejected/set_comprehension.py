# expect: line=6 error="a set comprehension is not supported" hint="list comprehension"
import numpy as np


def model(x):
    sizes = {n for n in x.shape}
    return np.sum(x) * len(sizes)
