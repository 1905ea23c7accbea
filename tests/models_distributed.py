"""Models the distributed tests share: the digits MLP of examples/digits_mlp.py, in float64."""
import inspect

import numpy as np


def cross_entropy(W1, b1, W2, b2, x, y):
    h = np.tanh(x @ W1 + b1)
    z = h @ W2 + b2
    z = z - np.max(z, axis=1, keepdims=True)
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return -np.mean(np.sum(y * logp, axis=1))


def line_of(fn, marker):
    """The file line of `fn` whose text contains `marker`."""
    lines, start = inspect.getsourcelines(fn)
    return start + next(i for i, text in enumerate(lines) if marker in text)


def tree_cross_entropy(params, x, y):
    """cross_entropy with its parameters in a tree: layers of (W, b) and a static leaf that steers."""
    h = x
    for W, b in params["hidden"]:
        h = np.tanh(h @ W + b) if params["act"] == "tanh" else np.sin(h @ W + b)
    z = h @ params["out"]["W"] + params["out"]["b"]
    z = z - np.max(z, axis=1, keepdims=True)
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return -np.mean(np.sum(y * logp, axis=1))
