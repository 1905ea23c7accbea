# expect: line=4 error="`import` inside the model is not supported" hint="module level"

def model(x):
    import numpy as np
    return np.sum(x)
