# expect: line=7 error="the model returns a tuple; it must return one scalar" hint="single number"
import numpy as np


def model(x):
    y = np.sum(x)
    return y, x
