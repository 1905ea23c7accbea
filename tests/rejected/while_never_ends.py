# expect: line=7 error="this `while` loop never ends" hint="`break` on one"
import numpy as np


def model(x):
    s = np.sum(x)
    while True:
        s = s * 0.5
    return s
