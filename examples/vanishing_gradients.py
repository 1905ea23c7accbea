"""Vanishing gradients: how much gradient reaches each layer of a deep network, for three activations.

A stack of 20 fully connected layers of width 32, initialised the usual way
(Glorot, std 1/sqrt(32), for sigmoid and tanh; He, std sqrt(2/32), for relu).
Backpropagation multiplies the gradient by each layer's local derivative on
its way down; sigmoid' is at most 1/4, so with sigmoid the gradient shrinks by
a roughly constant factor per layer and the first layers hardly learn. tanh'
is at most 1 and shrinks it much less; relu' is 0 or 1 and, with He
initialisation, keeps its size.

Left: the gradient norm of each layer's weights at initialisation (mean of 5
draws). Right: the loss of the same networks trained with SGD for 400 steps.
Writes examples/out/vanishing_gradients.png.
"""
import numpy as np

import symbackprop as sb
from _common import out_path, progress, pyplot

LAYERS, WIDTH, BATCH = 20, 32, 64
ACTIVATIONS = ("sigmoid", "tanh", "relu")


def deep(Ws, bs, W_out, x, y, activation):
    h = x
    for i in range(Ws.shape[0]):
        z = h @ Ws[i] + bs[i]
        if activation == "sigmoid":
            h = 1 / (1 + np.exp(-z))
        elif activation == "tanh":
            h = np.tanh(z)
        else:
            h = np.maximum(z, 0.0)
    return 0.5 * np.mean(np.sum((h @ W_out - y) ** 2, axis=1))


def init(rng, activation):
    std = np.sqrt(2.0 / WIDTH) if activation == "relu" else 1 / np.sqrt(WIDTH)
    Ws = rng.normal(scale=std, size=(LAYERS, WIDTH, WIDTH))
    bs = np.zeros((LAYERS, WIDTH))
    W_out = rng.normal(scale=1 / np.sqrt(WIDTH), size=(WIDTH, 1))
    return Ws, bs, W_out


def task(rng):
    """Inputs and a smooth target to regress."""
    x = rng.normal(size=(BATCH, WIDTH))
    y = np.sin(x @ rng.normal(scale=0.3, size=(WIDTH, 1)))
    return x, y


def gradient_norms(draws=5):
    """Per activation: the norm of d loss / d W_i for each layer i, averaged over `draws` initialisations."""
    gradient = sb.grad(deep, wrt="Ws")
    norms = {}
    for activation in ACTIVATIONS:
        per_draw = []
        for seed in range(draws):
            rng = np.random.default_rng(seed)
            Ws, bs, W_out = init(rng, activation)
            d_Ws = gradient(Ws, bs, W_out, *task(rng), activation)
            per_draw.append(np.linalg.norm(d_Ws.reshape(LAYERS, -1), axis=1))
        norms[activation] = np.mean(per_draw, axis=0)
    return norms


def training_curves(steps=400, lr=0.02):
    curves = {}
    for activation in ACTIVATIONS:
        rng = np.random.default_rng(0)
        Ws, bs, W_out = init(rng, activation)
        x, y = task(rng)
        step = sb.train_step(deep, sb.optim.SGD(lr=lr), wrt=("Ws", "bs", "W_out"))
        curves[activation] = [float(step(Ws, bs, W_out, x, y, activation))
                              for _ in progress(range(steps), f"{activation:8s}")]
    return curves


def main():
    norms = gradient_norms()
    print("gradient norm of each layer's weights at initialisation (layer 1 = nearest the input):")
    print("layer " + "".join(f"{a:>12s}" for a in ACTIVATIONS))
    for i in range(LAYERS):
        print(f"{i + 1:5d} " + "".join(f"{norms[a][i]:12.3e}" for a in ACTIVATIONS))
    for a in ACTIVATIONS:
        print(f"{a:8s} first layer / last layer: {norms[a][0] / norms[a][-1]:.2e}")
    curves = training_curves()
    for a in ACTIVATIONS:
        print(f"{a:8s} loss {curves[a][0]:.4f} -> {curves[a][-1]:.4f} after {len(curves[a])} SGD steps")

    plt = pyplot()
    if plt is not None:
        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
        for a in ACTIVATIONS:
            left.semilogy(np.arange(1, LAYERS + 1), norms[a], "o-", ms=4, label=a)
        left.set(xlabel="layer (1 = nearest the input)", ylabel="|d loss / d W| (log)",
                 title=f"Gradient reaching each of {LAYERS} layers at initialisation", xticks=range(1, LAYERS + 1, 2))
        left.legend()
        for a in ACTIVATIONS:
            right.semilogy(curves[a], label=a)
        right.set(xlabel="SGD step", ylabel="loss (log)", title="Training the same networks: SGD, lr 0.02")
        right.legend()
        fig.tight_layout()
        path = out_path("vanishing_gradients.png")
        fig.savefig(path, dpi=110)
        print(f"wrote {path}")
    return norms, curves


if __name__ == "__main__":
    main()
