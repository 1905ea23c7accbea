# expect: line=13 error="`inner_hessian` is an sb.hessian function with has_aux or memory_budget, which a model cannot call"
import numpy as np

import symbackprop as sb


def inner(x):
    return np.sum(x * x), x


inner_hessian = sb.hessian(inner, has_aux=True)
def model(x):
    return np.sum(inner_hessian(x)[0])
