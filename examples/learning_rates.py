"""Learning rates and optimizers, seen: loss curves, a local minimum, and trajectories on a narrow valley.

1. Gradient descent on a linear regression with a learning rate that is too
   small (crawls), about right (converges in a few steps) and too big (every
   step overshoots further: the loss grows).
2. f(x) = x**4 - 4x**2 + x has a shallow minimum at x = 1.35 and a deeper one
   at x = -1.47. Plain gradient descent started at x = 2.2 stops in the
   shallow one; with momentum the speed gathered on the way down carries it
   over the bump at x = 0.13 into the deeper one.
3. On the ill-conditioned quadratic f = (w0**2 + 100 w1**2)/2 (condition
   number 100), plain gradient descent must keep lr below 2/100 for the steep
   direction and so crawls along the flat one; momentum builds up speed along
   the valley; Adam scales each coordinate by its own gradient history, so
   both move at the same pace from the start.

Writes examples/out/learning_rates.png (with matplotlib installed).
"""
import numpy as np

import symbackprop as sb
from _common import out_path, progress, pyplot


def mse(w, b, x, y):
    return np.mean((w * x + b - y) ** 2)


def bumpy(x):
    return np.sum(x**4 - 4 * x**2 + x)


def valley(w):
    return 0.5 * (w[0] ** 2 + 100 * w[1] ** 2)


def loss_curves(steps=40):
    """Loss per step for three learning rates (full-batch gradient descent)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 200)
    y = 2.0 * x + 1.0 + rng.normal(scale=0.1, size=200)
    curves = {}
    for lr, label in [(0.02, "too small"), (0.5, "about right"), (1.05, "too big")]:
        w, b = np.array(0.0), np.array(0.0)
        step = sb.train_step(mse, sb.optim.SGD(lr=lr), wrt=("w", "b"))
        curves[f"lr = {lr} ({label})"] = [step(w, b, x, y) for _ in progress(range(steps), f"lr {lr}")]
    return curves


def local_minimum(steps=300, start=2.2):
    """x per step for plain gradient descent and for momentum, from the same start."""
    paths = {}
    for name, optimizer in [("gradient descent", sb.optim.SGD(lr=0.01)),
                            ("momentum 0.9", sb.optim.SGD(lr=0.01, momentum=0.9))]:
        x = np.array([start])
        step = sb.train_step(bumpy, optimizer)
        path = [x.item()]
        for _ in progress(range(steps), name):
            step(x)
            path.append(x.item())
        paths[name] = np.array(path)
    return paths


def trajectories(steps=80, start=(-4.5, 1.0)):
    """The points visited by three optimizers on the narrow valley."""
    paths = {}
    for name, optimizer in [("SGD lr=0.019", sb.optim.SGD(lr=0.019)),
                            ("momentum lr=0.03, 0.7", sb.optim.SGD(lr=0.03, momentum=0.7)),
                            ("Adam lr=0.3, beta1=0.8", sb.optim.Adam(lr=0.3, beta1=0.8))]:
        w = np.array(start)
        step = sb.train_step(valley, optimizer)
        path = [w.copy()]
        for _ in progress(range(steps), name):
            step(w)
            path.append(w.copy())
        paths[name] = np.array(path)
    return paths


def main():
    curves = loss_curves()
    print("1. final loss after 40 steps of gradient descent:")
    for label, losses in curves.items():
        print(f"   {label:25s} {losses[-1]:12.4g}")
    minima = local_minimum()
    print("\n2. f(x) = x**4 - 4x**2 + x from x = 2.2:")
    for name, path in minima.items():
        print(f"   {name:18s} stops at x = {path[-1]:+.3f}, f = {path[-1]**4 - 4 * path[-1]**2 + path[-1]:+.3f}")
    paths = trajectories()
    print("\n3. distance from the minimum of (w0**2 + 100 w1**2)/2 after 80 steps:")
    for name, path in paths.items():
        print(f"   {name:23s} {np.linalg.norm(path[-1]):.2e}")

    plt = pyplot()
    if plt is None:
        print("\n(install matplotlib to draw the figure)")
        return curves, minima, paths
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    ax = axes[0]
    for label, losses in curves.items():
        ax.semilogy(losses, label=label)
    ax.set(title="Learning rate: loss per step", xlabel="step", ylabel="mean squared error (log)")
    ax.legend()

    ax = axes[1]
    xs = np.linspace(-2.2, 2.4, 400)
    ax.plot(xs, xs**4 - 4 * xs**2 + xs, color="0.6", lw=1)
    for (name, path), color in zip(minima.items(), ("tab:blue", "tab:red")):
        f = path**4 - 4 * path**2 + path
        ax.plot(path, f, ".-", color=color, ms=3, lw=0.6, alpha=0.7, label=name)
        ax.plot(path[-1], f[-1], "o", color=color, ms=9, mfc="none", mew=2)
    ax.set(title="Momentum escapes a local minimum", xlabel="x", ylabel="x**4 - 4x**2 + x", ylim=(-6.5, 8))
    ax.legend(loc="upper center")

    ax = axes[2]
    g0, g1 = np.meshgrid(np.linspace(-5, 1, 300), np.linspace(-2.1, 2.1, 300))
    ax.contour(g0, g1, 0.5 * (g0**2 + 100 * g1**2), levels=np.geomspace(0.01, 200, 16), colors="0.75",
               linewidths=0.8)
    for name, path in paths.items():
        ax.plot(path[:, 0], path[:, 1], ".-", ms=3, lw=1, label=name)
    ax.plot(0, 0, "k*", ms=10)
    ax.set(title="(w0**2 + 100 w1**2)/2: 80 steps each", xlabel="w0", ylabel="w1")
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = out_path("learning_rates.png")
    fig.savefig(path, dpi=110)
    print(f"\nwrote {path}")
    return curves, minima, paths


if __name__ == "__main__":
    main()
