# expect: line=6 error="`+` cannot take a str"
import numpy as np


def model(x):
    return np.sum(x + "1")
