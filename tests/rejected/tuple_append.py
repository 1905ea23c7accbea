# expect: line=7 error="a tuple has no `.append`: tuples cannot change" hint="hs.append(h)"
import numpy as np


def model(x):
    hs = (x,)
    hs.append(x * 2)
    return np.sum(hs[0])
