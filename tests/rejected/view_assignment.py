# expect: line=9 error="`row` is a view of another array (a slice, reshape or transpose)" hint="row = row.copy()"
# args: x=float64[2,3]
import numpy as np


def model(x):
    y = x * 2
    row = y[0]
    row[1] = 0.0
    return np.sum(y)
