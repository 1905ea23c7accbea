"""Issue 15's RNN: 64 steps keeping the hidden states in a list, stacked for the loss, with the labels read
by a gather. The gradient against central differences on both backends (compile time against the steps is
measured in benchmarks/rnn_lists.py, not here)."""
import numpy as np

import symbackprop as sb
from gradcheck import assert_gradients_match


def rnn(Wx, Wh, b, Wo, xs, labels):
    h = np.zeros((xs.shape[1], Wh.shape[0]))
    hs = []
    for t in range(xs.shape[0]):
        h = np.tanh(xs[t] @ Wx + h @ Wh + b)
        hs.append(h)
    H = np.stack(hs)                                   # (steps, batch, hidden)
    logits = (H @ Wo).reshape(-1, Wo.shape[1])         # (steps * batch, classes)
    z = logits - np.max(logits, axis=1, keepdims=True)
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return -np.mean(logp[np.arange(logits.shape[0]), labels]) + 0.01 * np.sum(hs[-1] ** 2)


def args(steps=64, batch=3, inputs=2, hidden=5, classes=3):
    rng = np.random.default_rng(0)
    return [rng.normal(size=(inputs, hidden)) * 0.5, rng.normal(size=(hidden, hidden)) * 0.3,
            rng.normal(size=hidden) * 0.1, rng.normal(size=(hidden, classes)) * 0.5,
            rng.normal(size=(steps, batch, inputs)), rng.integers(0, classes, steps * batch)]


def test_rnn_over_64_steps_against_finite_differences(backend):
    a = args()
    value, grads = sb.value_and_grad(rnn, wrt=(0, 1, 2, 3), backend=backend)(*a)
    np.testing.assert_allclose(value, rnn(*a), rtol=1e-12)
    assert_gradients_match(rnn, grads, a, [0, 1, 2, 3])
