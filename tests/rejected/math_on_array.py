# expect: line=6 error="`math.exp` takes a scalar, got an array float64[3]" hint="np.exp on arrays"
import math


def model(x):
    return math.exp(x)
