"""One transformer block, trained to reverse sequences: layernorm, single-head attention, GELU MLP, residuals.

The task, generated here: a sequence of 8 tokens from an alphabet of 8; the
target at position i is the token at position 7 - i. Nothing in a token says
where it belongs, so the block has to learn to attend by position (through the
learned positional embeddings), which a single attention head can do. The
whole block, its gradient and the Adam update are one generated function.

Prints the loss and accuracy as training goes, then the time of one gradient
evaluation (forward and backward, generated code) over one forward pass (the
model itself run by NumPy). Writes examples/out/transformer_loss.png.
"""
import math
import time

import numpy as np

import symbackprop as sb
from _common import out_path, progress, pyplot

T, V, D, H = 8, 8, 32, 64  # sequence length, alphabet, model width, MLP width


def layernorm(x, gain, bias):
    mu = np.mean(x, axis=-1, keepdims=True)
    var = np.mean((x - mu) ** 2, axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * gain + bias


def gelu(x):
    return 0.5 * x * (1 + np.tanh(0.7978845608028654 * (x + 0.044715 * x**3)))


def attention(x, Wq, Wk, Wv, Wo):
    q = x @ Wq
    k = x @ Wk
    v = x @ Wv
    # math.sqrt gives a Python float, which keeps float32 arrays float32; np.sqrt(d) is a float64 NumPy
    # scalar and would make the scores (and everything after them) float64, in NumPy and here alike
    scores = q @ np.transpose(k, (0, 2, 1)) / math.sqrt(q.shape[-1])
    scores = scores - np.max(scores, axis=-1, keepdims=True)
    e = np.exp(scores)
    weights = e / np.sum(e, axis=-1, keepdims=True)
    return (weights @ v) @ Wo


def logits(E, P, g1, c1, Wq, Wk, Wv, Wo, g2, c2, W1, b1, W2, b2, U, tokens):
    x = tokens @ E + P                                             # (batch, T, D): embedding + position
    x = x + attention(layernorm(x, g1, c1), Wq, Wk, Wv, Wo)       # residual around attention
    x = x + gelu(layernorm(x, g2, c2) @ W1 + b1) @ W2 + b2         # residual around the MLP
    return x @ U


def block(E, P, g1, c1, Wq, Wk, Wv, Wo, g2, c2, W1, b1, W2, b2, U, tokens, targets):
    z = logits(E, P, g1, c1, Wq, Wk, Wv, Wo, g2, c2, W1, b1, W2, b2, U, tokens)
    z = z - np.max(z, axis=-1, keepdims=True)
    logp = z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))
    return -np.mean(np.sum(targets * logp, axis=-1))


PARAMS = ("E", "P", "g1", "c1", "Wq", "Wk", "Wv", "Wo", "g2", "c2", "W1", "b1", "W2", "b2", "U")


def init(rng):
    def normal(*shape, fan_in):
        return (rng.normal(size=shape) / np.sqrt(fan_in)).astype(np.float32)

    zeros, ones = (lambda n: np.zeros(n, np.float32)), (lambda n: np.ones(n, np.float32))
    return [normal(V, D, fan_in=1) * 0.5, normal(T, D, fan_in=1) * 0.5, ones(D), zeros(D),
            normal(D, D, fan_in=D), normal(D, D, fan_in=D), normal(D, D, fan_in=D), normal(D, D, fan_in=D),
            ones(D), zeros(D), normal(D, H, fan_in=D), zeros(H), normal(H, D, fan_in=H), zeros(D),
            normal(D, V, fan_in=D)]


def batch(rng, n):
    """n random sequences as one-hot tokens, and their reversals as one-hot targets."""
    seq = rng.integers(0, V, size=(n, T))
    eye = np.eye(V, dtype=np.float32)
    return eye[seq], eye[seq[:, ::-1]]


def accuracy(params, tokens, targets):
    predicted = np.argmax(logits(*params, tokens), axis=-1)
    return np.mean(predicted == np.argmax(targets, axis=-1))


def seconds(f, *args, repeat=7, number=20):
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            f(*args)
        best = min(best, (time.perf_counter() - start) / number)
    return best


def main(steps=800, batch_size=64, seed=0):
    rng = np.random.default_rng(seed)
    params = init(rng)
    test_tokens, test_targets = batch(np.random.default_rng(seed + 1), 512)

    start = time.perf_counter()
    step = sb.train_step(block, sb.optim.Adam(lr=3e-3), wrt=PARAMS)
    step.specialise(*params, *batch(rng, batch_size))
    print(f"compiled the training step in {time.perf_counter() - start:.1f} s "
          f"({len(step.source.splitlines())} lines of NumPy)")

    losses = []
    bar = progress(range(steps), "training")
    for i in bar:
        losses.append(float(step(*params, *batch(rng, batch_size))))
        if i % 50 == 0:
            bar.set_postfix_str(f"loss {np.mean(losses[-50:]):.3f}")
        if i % 100 == 0 or i == steps - 1:
            bar.write(f"step {i:5d}  loss {np.mean(losses[-50:]):.3g}  "
                      f"test accuracy {accuracy(params, test_tokens, test_targets):.3f}")
    final = accuracy(params, test_tokens, test_targets)
    print(f"loss {np.mean(losses[:50]):.3f} -> {np.mean(losses[-50:]):.3g}, test accuracy {final:.3f} "
          f"(chance: {1 / V:.3f})")
    assert np.mean(losses[-50:]) < 0.25 * np.mean(losses[:50]), "the loss should fall clearly"

    # gradient time over forward time, on one batch
    grad = sb.value_and_grad(block, wrt=PARAMS)
    tokens, targets = batch(rng, batch_size)
    grad(*params, tokens, targets)  # compile
    forward = seconds(block, *params, tokens, targets)
    backward = seconds(grad, *params, tokens, targets)
    print(f"\nforward (NumPy running the model) {forward * 1e6:8.0f} us")
    print(f"value and gradient (generated)    {backward * 1e6:8.0f} us   -> gradient / forward = "
          f"{backward / forward:.2f}")

    plt = pyplot()
    if plt is not None:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        ax.semilogy(losses, lw=0.5, alpha=0.4, label="minibatch")
        smooth = np.convolve(losses, np.ones(50) / 50, mode="valid")
        ax.semilogy(np.arange(len(smooth)) + 24.5, smooth, label="mean of 50 (centred)")
        ax.axhline(np.log(V), color="0.5", ls=":", label=f"chance, log {V}")
        ax.set(xlabel="step", ylabel="cross-entropy (log)", title=f"Transformer block reversing sequences: "
                                                           f"test accuracy {final:.1%}")
        ax.legend()
        fig.tight_layout()
        path = out_path("transformer_loss.png")
        fig.savefig(path, dpi=110)
        print(f"wrote {path}")
    return losses, final


if __name__ == "__main__":
    main()
