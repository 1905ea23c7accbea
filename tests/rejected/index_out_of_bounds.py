# expect: line=6 error="index 5 is out of bounds for axis 0 with size 3" kind=ValueError
import numpy as np


def model(x):
    return x[5]
