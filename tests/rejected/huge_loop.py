# expect: line=7 error="the loop runs more than 100000 times" hint="vectorise"
import numpy as np


def model(x):
    total = np.sum(x)
    for i in range(1_000_000):
        pass
    return total
