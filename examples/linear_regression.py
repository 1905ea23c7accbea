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
    plot(x, y, w, b, losses)
    return w, b, losses


def plot(x, y, w, b, losses):
    """Data, fitted line and loss curve in examples/out/linear_regression.png, when matplotlib is installed."""
    from pathlib import Path

    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(x, y, ".", label="data")
    line = np.linspace(-1, 1, 2)
    left.plot(line, w * line + b, label=f"fit: y = {w:.2f} x {b:+.2f}")
    left.plot(line, 3.0 * line - 0.5, "--", color="0.5", label="true: y = 3 x - 0.5")
    left.set(xlabel="x", ylabel="y", title="Data and fitted line")
    left.legend()
    right.semilogy(losses)
    right.set(xlabel="step", ylabel="mean squared error (log)", title="Loss")
    fig.tight_layout()
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    path = out / "linear_regression.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
