# expect: line=7 error="`h` has shape (3,) before the `while` loop and (1, 3) after an iteration" hint="final shape before the loop"
import numpy as np


def model(x):
    h = x
    while np.sum(h) < 10.0:
        h = np.stack([h * 2.0])
    return np.sum(h)
