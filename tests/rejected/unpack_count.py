# expect: line=6 error="cannot unpack an array float64[3] into 2 names" kind=ValueError
import numpy as np


def model(x):
    a, b = x
    return a * b
