# expect: line=5 error="`helper` is an async function" hint="plain functions"
import numpy as np


async def helper(x):
    return x


def model(x):
    return np.sum(helper(x))
