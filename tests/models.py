"""Small models, one or two per primitive, used by the gradient tests."""
import math

import numpy as np


def helper_affine(x, W, b):
    return x @ W + b


def helper_square(r):
    return r * r


# ---- elementwise -------------------------------------------------------------
def unary_all(x):
    a = np.exp(x) + np.log(x) + np.log1p(x) + np.expm1(x) + np.sqrt(x) + np.square(x)
    b = np.sin(x) + np.cos(x) + np.tan(x) + np.tanh(x) + np.sinh(x) + np.cosh(x)
    c = np.arctan(x) + np.arcsin(x / 2) + np.arccos(x / 2) + np.abs(x - 0.5)
    return np.sum(a * b + c)


def binary_broadcast(a, b):
    return np.sum(a * b + a / (b + 3.0) - b ** 2 + a ** 3 - (a - b) ** 2)


def power_general(a, b):
    return np.sum(a ** b)


def sigmoid_loss(w, x, y):
    s = 1 / (1 + np.exp(-(x @ w)))
    return -np.mean(y * np.log(s) + (1 - y) * np.log(1 - s))


def max_min(a, b):
    return np.sum(np.maximum(a, b) * 2 + np.minimum(a, 0.3 * b))


def where_select(x, y):
    return np.sum(np.where(x > 0, x * y, -x + y ** 2))


def where_safe_sqrt(x):
    return np.sum(np.where(x > 0, np.sqrt(x), 0.0))


def where_safe_log(x):
    return np.sum(np.where(x > 0, np.log(x), x))


def where_safe_division(x):
    return np.sum(np.where(x != 0, np.sin(x) / x, 1.0))


def clip_model(x):
    return np.sum(np.clip(x, -0.5, 0.7) ** 2)


def math_scalar(w, b, x):
    z = w * x + b
    return math.tanh(z) * math.exp(-z * z) + math.sqrt(w * w + 1)


def comparison_mask(x, y):
    mask = (x > 0) & (y < 0.5)
    return np.sum(np.where(mask, x * y, 0.0) + np.where(~mask, x, 0.0))


# ---- reductions ----------------------------------------------------------------
def reductions(x):
    a = np.sum(x, axis=0) * 2
    b = np.mean(x, axis=1, keepdims=True)
    c = np.max(x, axis=-1)
    d = np.min(x, axis=(0, 1), keepdims=True)
    return np.sum(a) + np.sum(b * x) + np.sum(c ** 2) + np.sum(d) + x.sum() + x.mean(axis=0).max()


def max_all(x):
    return np.max(x) + np.min(x * 2)


# ---- linear algebra --------------------------------------------------------------
def matmul_2d(A, B):
    return np.sum((A @ B) ** 2)


def matmul_vectors(A, v, u):
    return np.sum(A @ v) + (u @ A).sum() + v @ v + np.dot(u, u)


def matmul_batched(A, B, C):
    return np.sum(np.tanh(A @ B) + A @ C)


def outer_dot(a, b, M):
    return np.sum(np.outer(a, b) * M) + np.dot(a, M @ b)


def transpose_reshape(x):
    y = np.transpose(x, (2, 0, 1)).reshape(4, -1)
    return np.sum(y.T @ y) + np.sum(x.T ** 2) + np.sum(np.reshape(x, (6, 4)) * 0.5)


# ---- shapes and indexing ------------------------------------------------------------
def indexing(x):
    a = x[0] * 2 + x[1, 1:3].sum()
    b = x[:, ::2] ** 2
    c = x[-1, None] * x[..., 0:1]
    return np.sum(a) + np.sum(b) + np.sum(c) + x[2, 3]


def concat_stack(a, b):
    c = np.concatenate([a, b * 2], axis=1)
    s = np.stack([a, b, a * b], axis=0)
    return np.sum(c ** 2) + np.sum(np.tanh(s)) + np.sum(np.concatenate((a, b)) * 3)


def loop_stacked(Ws, bs, x):
    h = x
    for i in range(Ws.shape[0]):
        h = np.tanh(h @ Ws[i] + bs[i])
    return np.mean(h ** 2)


def loop_stacked_relu(Ws, bs, x):
    h = x
    for i in range(Ws.shape[0]):
        h = np.maximum(h @ Ws[i] + bs[i], 0.0)
    return np.sum(np.sin(h))


def loop_stacked_residual(Ws, x):
    h = x
    for i in range(Ws.shape[0]):
        h = h + 0.5 * np.tanh(h @ Ws[i].T)
    return np.sum(h * h)


def loop_stacked_reversed(Ws, bs, x):
    """Each layer's input is a view (columns reversed): it cannot be written into a stack."""
    h = x
    for i in range(Ws.shape[0]):
        h = np.tanh(h[:, ::-1] @ Ws[i] + bs[i])
    return np.mean(h ** 2)


def loop_stacked_partial(Ws, bs, x):
    """Only the last two of four layers: the gradient of Ws has zero rows and is no batched product."""
    h = x
    for i in range(2, 4):
        h = np.tanh(h @ Ws[i] + bs[i])
    return np.mean(h ** 2)


def loop_with_helpers(W, b, x, y, n):
    total = 0.0
    for i in range(n):
        r = helper_affine(x, W, b) * (i + 1) - y
        total = total + np.sum(helper_square(r))
    if n > 2:
        total = total / n
    return total


def unpack_and_augassign(p, x):
    a, b = p[0], p[1]
    s = a * x
    s += b
    s *= 2.0
    u, v = x
    return np.sum(s ** 2) + np.sum(u * v)


# ---- softmax family --------------------------------------------------------------
def log_softmax_ce(z, y):
    m = np.max(z, axis=1, keepdims=True)
    s = z - m
    logp = s - np.log(np.sum(np.exp(s), axis=1, keepdims=True))
    return -np.mean(np.sum(y * logp, axis=1))


def logsumexp_loss(z, y):
    m = np.max(z, axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.sum(np.exp(z - m), axis=1))
    return np.mean(lse - np.sum(y * z, axis=1))


def softmax_attention(Q, K, V):
    scores = Q @ K.T / np.sqrt(Q.shape[1])
    e = np.exp(scores - np.max(scores, axis=-1, keepdims=True))
    p = e / np.sum(e, axis=-1, keepdims=True)
    return np.sum((p @ V) ** 2)


def mlp(W1, b1, W2, b2, x, y):
    h = np.tanh(x @ W1 + b1)
    logits = h @ W2 + b2
    m = np.max(logits, axis=1, keepdims=True)
    z = logits - m
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return -np.mean(np.sum(y * logp, axis=1))


def layernorm(x, g, b):
    mu = np.mean(x, axis=-1, keepdims=True)
    var = np.mean((x - mu) ** 2, axis=-1, keepdims=True)
    xhat = (x - mu) / np.sqrt(var + 1e-5)
    return np.sum((xhat * g + b) ** 3)


def line(w, b, x, y):
    y_hat = w * x + b
    return (y_hat - y) ** 2


def returns_param(x):
    return x


def constant_loss(x):
    return 3.0


def reciprocal_chain(a, b):
    h = 1.0 / a
    return np.sum(h / b ** 2 + a ** -3 * b)


def boolean_arithmetic(x, y):
    return np.sum(y - x * (x > 0) - np.minimum(2 * x, 4.5 - x) + (x > 0.3) * y)


def float_scale_in_array_model(w, x, scale=2.0, n=3):
    for i in range(n):
        w = np.tanh(w * x)
    return scale * np.sum(w)


def negated_relu_in_a_sum(x, s):
    v = np.maximum(np.mean(x, axis=0), 0.0)
    return np.sum(np.tanh(s) * x - v)


def stable_bce(w, b, X, y):
    z = X @ w + b
    return np.mean(np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z))) - y * z)


def stable_bce_scalar(w, b, x, y):
    z = w * x + b
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z))) - y * z


def gelu_tanh(x, W):
    u = x @ W
    return np.sum(0.5 * u * (1.0 + np.tanh(0.7978845608028654 * (u + 0.044715 * u ** 3))))


def half_one_minus_tanh(x):
    return np.sum(x * (1.0 - np.tanh(x)) / 2 + np.tanh(x) ** 2)
