"""A multilayer perceptron on the 8x8 handwritten digits that ship with scikit-learn, trained with Adam.

1797 images of 64 pixels, 10 classes; 80% train, 20% test. One hidden layer of
64 tanh units, softmax cross-entropy, minibatches of 64 reshuffled every epoch.
The training step (forward, backward, Adam update in place) is one generated
function. Prints the test accuracy and writes examples/out/digits_loss.png.
Needs scikit-learn (for the data set, no download) and, for the plot, matplotlib.

Mixed precision: `--dtype bfloat16` or `--dtype float16` runs the forward and
backward passes in that dtype on float32 master weights, which Adam updates
(sb.train_step's compute_dtype=; float16 with dynamic loss scaling), and
`--overflow-at K` makes call K's scaled loss inf (the step's test hook) to show
the step skipped and training going on. `--backend llvm` for the JIT backend.
"""
import argparse

import numpy as np
from sklearn.datasets import load_digits

import symbackprop as sb
from _common import out_path, progress, pyplot


def logits(W1, b1, W2, b2, x):
    h = np.tanh(x @ W1 + b1)
    return h @ W2 + b2


def cross_entropy(W1, b1, W2, b2, x, y):
    z = logits(W1, b1, W2, b2, x)
    z = z - np.max(z, axis=1, keepdims=True)
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return -np.mean(np.sum(y * logp, axis=1))


def split(seed=0, test_fraction=0.2):
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)  # pixels in [0, 1]
    labels = digits.target
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return x[train], labels[train], x[test], labels[test]


def main(epochs=40, batch=64, hidden=64, seed=0, dtype="float32", backend="numpy", overflow_at=None, plot=True):
    x_train, l_train, x_test, l_test = split(seed)
    y_train = np.eye(10, dtype=np.float32)[l_train]
    rng = np.random.default_rng(seed)
    W1 = (rng.normal(size=(64, hidden)) / 8).astype(np.float32)
    b1 = np.zeros(hidden, np.float32)
    W2 = (rng.normal(size=(hidden, 10)) / np.sqrt(hidden)).astype(np.float32)
    b2 = np.zeros(10, np.float32)

    step = sb.train_step(cross_entropy, sb.optim.Adam(lr=3e-3), wrt=("W1", "b1", "W2", "b2"), backend=backend,
                         compute_dtype=None if dtype == "float32" else dtype)
    losses, epoch_losses = [], []
    bar = progress(range(epochs), "epochs")
    for _ in bar:
        order = rng.permutation(len(x_train))  # a new order of minibatches every epoch
        n_full = len(order) // batch * batch   # the last, partial batch is dropped: one shape, one compilation
        for start in range(0, n_full, batch):
            idx = order[start:start + batch]
            if overflow_at is not None and len(losses) == overflow_at:
                step.inject_overflow()  # this call's scaled loss is inf: its update is skipped
            losses.append(float(step(W1, b1, W2, b2, x_train[idx], y_train[idx])))
        epoch_losses.append(np.mean(losses[-(n_full // batch):]))
        bar.set_postfix_str(f"loss {epoch_losses[-1]:.4f}")

    predicted = np.argmax(logits(W1, b1, W2, b2, x_test), axis=1)
    accuracy = np.mean(predicted == l_test)
    train_accuracy = np.mean(np.argmax(logits(W1, b1, W2, b2, x_train), axis=1) == l_train)
    print(f"{dtype} compute ({backend}): train accuracy {train_accuracy:.4f}, test accuracy {accuracy:.4f} "
          f"({np.sum(predicted == l_test)}/{len(l_test)}), last epoch's loss {epoch_losses[-1]:.5f}, {len(losses)} steps, "
          f"{step.compilations} compilation{'s' if step.compilations != 1 else ''}, float32 state: "
          f"{sorted({str(v.dtype) for v in step.state.values()})}")
    if dtype == "float16":
        print(f"loss scale {step.loss_scale:g}, {step.skipped_steps} step(s) skipped")
    assert accuracy >= 0.95, "the MLP should reach 95% test accuracy"

    plt = pyplot() if plot else None
    if plt is not None:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        steps_per_epoch = len(losses) // epochs
        ax.semilogy(np.arange(len(losses)) / steps_per_epoch, losses, lw=0.6, alpha=0.5, label="minibatch")
        ax.semilogy(np.arange(epochs) + 0.5, epoch_losses, "o-", ms=3, label="epoch mean")
        ax.set(xlabel="epoch", ylabel="cross-entropy (log)",
               title=f"Digits MLP, Adam ({dtype} compute): test accuracy {accuracy:.1%}")
        ax.legend()
        fig.tight_layout()
        path = out_path("digits_loss.png" if dtype == "float32" else f"digits_loss_{dtype}.png")
        fig.savefig(path, dpi=110)
        print(f"wrote {path}")
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                        help="the forward and backward passes' dtype (float32 master weights either way)")
    parser.add_argument("--backend", choices=("numpy", "llvm"), default="numpy")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--overflow-at", type=int, default=None, metavar="K",
                        help="float16: make call K's scaled loss inf (skipped, the scale halved)")
    options = parser.parse_args()
    main(epochs=options.epochs, dtype=options.dtype, backend=options.backend, overflow_at=options.overflow_at)
