# expect: line=7 error="`model` is a closure (it reads scale from an enclosing function)" hint="module level"
import numpy as np


def make(scale):

    def model(x):
        return np.sum(x) * scale
    return model


model = make(2.0)
