# expect: line=8 error="the module `random` (random) cannot be used inside a model" hint="`symbackprop docs language`"
import random

import numpy as np


def model(x):
    return np.sum(x) * random.random()
