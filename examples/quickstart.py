"""Quickstart: decorate a model, call the gradient, read the code symbackprop wrote for it."""
import numpy as np

import symbackprop as sb


def mlp(W1, b1, W2, b2, x, y):
    """A one-hidden-layer network with softmax cross-entropy."""
    h = np.tanh(x @ W1 + b1)
    logits = h @ W2 + b2
    m = np.max(logits, axis=1, keepdims=True)
    z = logits - m
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return -np.mean(np.sum(y * logp, axis=1))


loss_and_grads = sb.value_and_grad(mlp, wrt=("W1", "b1", "W2", "b2"))


def main():
    rng = np.random.default_rng(0)
    W1, b1 = rng.normal(size=(4, 8)) * 0.5, np.zeros(8)
    W2, b2 = rng.normal(size=(8, 3)) * 0.5, np.zeros(3)
    x = rng.normal(size=(16, 4))
    y = np.eye(3)[rng.integers(0, 3, 16)]

    loss, (dW1, db1, dW2, db2) = loss_and_grads(W1, b1, W2, b2, x, y)
    print(f"loss = {loss:.6f}   |dW1| = {np.linalg.norm(dW1):.6f}   |db2| = {np.linalg.norm(db2):.6f}")
    print()
    print("The gradient code symbackprop generated for this signature:")
    print()
    print(loss_and_grads.source)


if __name__ == "__main__":
    main()
