"""Differentially private SGD (DP-SGD) on the 8x8 digits: per-example gradients, clipped, noised.

Each step takes a minibatch, computes every example's gradient with `sb.per_example_grad` (one generated
program for the whole batch, the gradients with a leading batch axis), scales each example's gradient to
an L2 norm of at most `clip` (over all parameters together), sums them, adds Gaussian noise of standard
deviation `noise * clip`, and divides by the batch size: the update of Abadi et al., "Deep Learning with
Differential Privacy" (2016). The privacy accounting (epsilon for these settings) is not computed here.
Prints the test accuracy against plain SGD on the same schedule; needs scikit-learn (the data set).
"""
import numpy as np

import symbackprop as sb
from digits_mlp import split


def cross_entropy(params, x, y):
    (W1, b1), (W2, b2) = params
    h = np.tanh(x @ W1 + b1)
    z = h @ W2 + b2
    z = z - np.max(z, axis=1, keepdims=True)
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return -np.mean(np.sum(y * logp, axis=1))


def leaves(tree):
    return [a for layer in tree for a in layer]


def private_gradient(per_example, clip, noise, rng):
    """The DP-SGD gradient from per-example gradients (a tree of arrays with a leading batch axis)."""
    flat = leaves(per_example)
    n = flat[0].shape[0]
    norms = np.sqrt(sum(np.sum(g.reshape(n, -1) ** 2, axis=1) for g in flat))
    scale = np.minimum(1.0, clip / np.maximum(norms, 1e-12))       # each example's norm at most `clip`
    out = []
    for g in flat:
        total = np.tensordot(scale, g, axes=1)                       # the clipped sum over the examples
        out.append((total + rng.normal(scale=noise * clip, size=total.shape)) / n)
    return out, norms


def init(rng, hidden):
    return [(rng.normal(size=(64, hidden)) / 8, np.zeros(hidden)),
            (rng.normal(size=(hidden, 10)) / np.sqrt(hidden), np.zeros(10))]


def accuracy(params, x, labels):
    (W1, b1), (W2, b2) = params
    return float(np.mean(np.argmax(np.tanh(x @ W1 + b1) @ W2 + b2, axis=1) == labels))


def train(private, epochs=30, batch=64, hidden=64, lr=0.5, clip=1.0, noise=1.0, seed=0):
    x_train, l_train, x_test, l_test = (a.astype(np.float64) if a.dtype.kind == "f" else a for a in split(seed))
    y_train = np.eye(10)[l_train]
    rng = np.random.default_rng(seed)
    params = init(rng, hidden)
    per_example = sb.per_example_grad(cross_entropy, wrt="params")
    grad = sb.grad(cross_entropy, wrt="params")
    clipped = []
    for _ in range(epochs):
        order = rng.permutation(len(x_train))
        for start in range(0, len(order) // batch * batch, batch):   # full batches only: one compilation
            idx = order[start:start + batch]
            if private:
                g, norms = private_gradient(per_example(params, x_train[idx], y_train[idx]), clip, noise, rng)
                clipped.append(float(np.mean(norms > clip)))
            else:
                g = leaves(grad(params, x_train[idx], y_train[idx]))
            for p, d in zip(leaves(params), g):
                p -= lr * d                                          # in place: params keeps its arrays
    return accuracy(params, x_test, l_test), clipped, per_example


def main():
    plain, _, _ = train(private=False)
    private, clipped, per_example = train(private=True)
    print(f"test accuracy: SGD {plain:.3f}, DP-SGD (clip 1.0, noise multiplier 1.0) {private:.3f}; "
          f"{np.mean(clipped):.0%} of the per-example gradients were clipped; "
          f"per_example_grad compiled {per_example.compilations} time(s)")
    assert private >= 0.85, "DP-SGD should reach 85% test accuracy on the digits"
    return plain, private


if __name__ == "__main__":
    main()
