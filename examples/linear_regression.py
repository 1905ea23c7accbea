"""Linear regression y = w*x + b with mean squared error, trained by gradient descent."""
import numpy as np

import symbackprop as sb


def mse(w, b, x, y):
    y_hat = w * x + b
    return np.mean((y_hat - y) ** 2)


def main(steps=200, learning_rate=0.1):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=64)
    y = 3.0 * x - 0.5 + rng.normal(scale=0.1, size=64)

    step = sb.value_and_grad(mse, wrt=("w", "b"))
    w, b = 0.0, 0.0
    losses = []
    for i in range(steps):
        loss, (dw, db) = step(w, b, x, y)
        w -= learning_rate * dw
        b -= learning_rate * db
        losses.append(loss)
        if i % 25 == 0 or i == steps - 1:
            print(f"step {i:4d}   loss {loss:.5f}   w {w:+.4f}   b {b:+.4f}")
    print(f"\nfitted y = {w:.3f} x {b:+.3f}   (data drawn from y = 3.000 x -0.500)")
    assert losses[-1] < losses[0] / 10, "the loss should fall"
    print("\nThe generated gradient code:\n")
    print(step.source)
    return w, b, losses


if __name__ == "__main__":
    main()
