# expect: line=7 error="name `hiden` is not defined" hint="Did you mean `hidden`?"
import numpy as np


def model(x):
    hidden = np.tanh(x)
    return np.sum(hiden)
