"""The six benchmark workloads: model, inputs, `wrt`, and a hand-written expert baseline.

Each model is a module-level function in symbackprop's accepted language (docs: shared/API.md),
parameters first and data last, returning a scalar loss. Each `*_inputs()` makes the positional
arguments with a fixed seed, all float64. Each expert pair is plain NumPy (or plain floats for the
scalar workloads), tuned by hand: `*_forward(*args) -> loss` and
`*_value_and_grad(*args) -> (loss, grads)` with `grads` a tuple in `wrt` order, the shape
`sb.value_and_grad(model, wrt=wrt)` returns. `WORKLOADS` lists them; `benchmarks/check.py`
tests every expert gradient against central differences of the model.
"""

import inspect
import math
from dataclasses import dataclass
from math import cos, exp, log, sin, sqrt, tanh
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Workload:
    name: str                  # "W1" .. "W6"
    title: str                 # one line for tables
    model: Callable            # the restricted-language model
    make_inputs: Callable      # () -> tuple of positional arguments
    wrt: tuple                 # names of the parameters to differentiate
    forward: Callable          # hand-written expert forward
    value_and_grad: Callable   # hand-written expert (loss, grads)

    @property
    def arg_names(self):
        return tuple(inspect.signature(self.model).parameters)

    @property
    def wrt_indices(self):
        return tuple(self.arg_names.index(n) for n in self.wrt)


class Scratch:
    """Named scratch arrays kept between calls, for the experts' large intermediates.

    A fresh 256 KiB array can cost ~100 µs in page faults on these VMs, depending on what
    glibc's malloc last returned to the OS, so the experts write intermediates into arrays that
    stay mapped. float64 only, not thread-safe. Gradients handed back are always fresh arrays.
    """

    def __init__(self):
        self._arrays = {}

    def __call__(self, name, shape):
        array = self._arrays.get(name)
        if array is None or array.shape != shape:
            array = self._arrays[name] = np.empty(shape)
        return array


# ---------------------------------------------------------------------------------------------
# W1: a line y = w*x + b, squared error on one point, all Python floats.

def line(w, b, x, y):
    pred = w * x + b
    return (pred - y) ** 2


def line_inputs(seed=1):
    rng = np.random.default_rng(seed)
    w, b, x, y = (float(v) for v in rng.normal(size=4))
    return w, b, x, y


def line_forward(w, b, x, y):
    r = w * x + b - y
    return r * r


def line_value_and_grad(w, b, x, y):
    r = w * x + b - y
    d_pred = r + r                               # d r^2 / d r
    return r * r, (d_pred * x, d_pred)


# ---------------------------------------------------------------------------------------------
# W2: a scalar expression of 8 float parameters, about 65 operations.

def scalar_expr(a, b, c, d, e, f, g, h):
    u = np.tanh(a * b + c)
    v = np.exp(-d * d) * np.sin(e + f)
    w = np.log(1.0 + g * g + h * h)
    p = np.sqrt(u * u + v * v + 1.0)
    q = (a - h) / (1.0 + w)
    r = np.sin(p * q) + np.tanh(u - v)
    s = np.exp(0.5 * r) * (b + c * d)
    t = np.log(1.0 + s * s) / p
    k = np.sqrt(e * e + f * f + 0.25)
    m = np.tanh(k * g - h / k)
    n = u * v + w * q - r * s
    return t * m + n / (1.0 + k) + np.sin(a * e) * np.exp(-b * b)


def scalar_expr_inputs(seed=2):
    rng = np.random.default_rng(seed)
    return tuple(float(v) for v in rng.uniform(-1.0, 1.0, size=8))


def scalar_expr_forward(a, b, c, d, e, f, g, h):
    u = tanh(a * b + c)
    v = exp(-d * d) * sin(e + f)
    w = log(1.0 + g * g + h * h)
    p = sqrt(u * u + v * v + 1.0)
    q = (a - h) / (1.0 + w)
    r = sin(p * q) + tanh(u - v)
    s = exp(0.5 * r) * (b + c * d)
    t = log(1.0 + s * s) / p
    k = sqrt(e * e + f * f + 0.25)
    m = tanh(k * g - h / k)
    n = u * v + w * q - r * s
    return t * m + n / (1.0 + k) + sin(a * e) * exp(-b * b)


def scalar_expr_value_and_grad(a, b, c, d, e, f, g, h):
    # The forward pass is written out again here, keeping what the backward pass reuses:
    # calling a shared helper and unpacking its 24 results costs 9 % of the whole.
    u = tanh(a * b + c)
    ed = exp(-d * d)
    sef = sin(e + f)
    v = ed * sef
    big_w = 1.0 + g * g + h * h
    w = log(big_w)
    p = sqrt(u * u + v * v + 1.0)
    inv_q = 1.0 / (1.0 + w)
    q = (a - h) * inv_q
    pq = p * q
    tuv = tanh(u - v)
    r = sin(pq) + tuv
    er = exp(0.5 * r)
    bcd = b + c * d
    s = er * bcd
    big_s = 1.0 + s * s
    t = log(big_s) / p
    k = sqrt(e * e + f * f + 0.25)
    m = tanh(k * g - h / k)
    n = u * v + w * q - r * s
    inv_k = 1.0 / (1.0 + k)
    sae = sin(a * e)
    eb = exp(-b * b)
    z = t * m + n * inv_k + sae * eb
    # z = t*m + n/(1+k) + sin(a e) exp(-b^2)
    d_t = m
    d_m = t
    d_n = inv_k
    d_k = -n * inv_k * inv_k
    cae = cos(a * e) * eb
    d_a = cae * e
    d_e = cae * a
    d_b = -2.0 * b * eb * sae
    # n = u v + w q - r s
    d_u = v * d_n
    d_v = u * d_n
    d_w = q * d_n
    d_q = w * d_n
    d_r = -s * d_n
    d_s = -r * d_n
    # m = tanh(k g - h/k): tanh' = 1 - m^2
    d_kk = d_m * (1.0 - m * m)
    d_k += d_kk * (g + h / (k * k))
    d_g = d_kk * k
    d_h = -d_kk / k
    # k = sqrt(e^2 + f^2 + 1/4): d k / d e = e / k
    d_kk = d_k / k
    d_e += d_kk * e
    d_f = d_kk * f
    # t = log(1 + s^2) / p
    d_s += d_t / p * 2.0 * s / big_s
    d_p = -d_t * t / p
    # s = exp(r/2) (b + c d)
    d_bcd = d_s * er
    d_r += d_s * s * 0.5
    d_b += d_bcd
    d_c = d_bcd * d
    d_d = d_bcd * c
    # r = sin(p q) + tanh(u - v)
    d_pq = d_r * cos(pq)
    d_uv = d_r * (1.0 - tuv * tuv)
    d_u += d_uv
    d_v -= d_uv
    d_p += d_pq * q
    d_q += d_pq * p
    # q = (a - h) / (1 + w)
    d_aq = d_q * inv_q
    d_a += d_aq
    d_h -= d_aq
    d_w -= d_aq * q
    # p = sqrt(u^2 + v^2 + 1): d p / d u = u / p
    d_pp = d_p / p
    d_u += d_pp * u
    d_v += d_pp * v
    # w = log(1 + g^2 + h^2)
    d_ww = 2.0 * d_w / big_w
    d_g += d_ww * g
    d_h += d_ww * h
    # v = exp(-d^2) sin(e + f)
    d_d -= 2.0 * d * d_v * v
    d_ef = d_v * ed * cos(e + f)
    d_e += d_ef
    d_f += d_ef
    # u = tanh(a b + c)
    d_abc = d_u * (1.0 - u * u)
    d_a += d_abc * b
    d_b += d_abc * a
    d_c += d_abc
    return z, (d_a, d_b, d_c, d_d, d_e, d_f, d_g, d_h)


# ---------------------------------------------------------------------------------------------
# W3: logistic regression, mean binary cross-entropy written stably.
# b is a Python float (the scalar-ish bias); its gradient comes back as a Python float.

def logistic(w, b, X, y):
    z = X @ w + b
    # log(1 + e^z) - y z, with softplus as max(z, 0) + log1p(e^-|z|): no overflow for any z
    return np.mean(np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z))) - y * z)


def logistic_inputs(seed=3, n=4096, d=64):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    w_true = rng.normal(size=d) / np.sqrt(d)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-3.0 * (X @ w_true)))).astype(np.float64)
    w = 0.1 * rng.normal(size=d)
    return w, 0.1, X, y


def _logistic_primal(w, b, X, y):
    z = X @ w
    z += b
    e = np.abs(z)
    sum_max_z0 = 0.5 * (z.sum() + e.sum())       # sum(max(z, 0)) = (sum z + sum |z|) / 2
    np.negative(e, out=e)
    np.exp(e, out=e)                             # e^-|z|, in (0, 1]
    loss = (sum_max_z0 + np.log1p(e).sum() - y @ z) / z.shape[0]
    return float(loss), z, e


def logistic_forward(w, b, X, y):
    return _logistic_primal(w, b, X, y)[0]


def logistic_value_and_grad(w, b, X, y):
    loss, z, e = _logistic_primal(w, b, X, y)
    # d BCE / d z = sigmoid(z) - y; sigmoid(z) = 1/(1+e) for z >= 0 and e/(1+e) below,
    # which keeps its full relative precision where it is tiny
    r = e + 1.0
    np.divide(1.0, r, out=r)
    d_z = np.where(z >= 0.0, r, e * r)
    d_z -= y
    d_z *= 1.0 / z.shape[0]
    return loss, (d_z @ X, float(d_z.sum()))


# ---------------------------------------------------------------------------------------------
# W4: MLP 784-256-10, batch 128, tanh hidden layer, softmax cross-entropy, one-hot labels.

def mlp(W1, b1, W2, b2, X, y):
    h = np.tanh(X @ W1 + b1)
    z = h @ W2 + b2
    m = np.max(z, axis=1, keepdims=True)
    lse = m + np.log(np.sum(np.exp(z - m), axis=1, keepdims=True))
    return -np.mean(np.sum(y * (z - lse), axis=1))


def mlp_inputs(seed=4, batch=128, n_in=784, n_hidden=256, n_out=10):
    rng = np.random.default_rng(seed)
    W1 = rng.normal(size=(n_in, n_hidden)) / np.sqrt(n_in)
    b1 = 0.01 * rng.normal(size=n_hidden)
    W2 = rng.normal(size=(n_hidden, n_out)) / np.sqrt(n_hidden)
    b2 = 0.01 * rng.normal(size=n_out)
    X = rng.random((batch, n_in))
    y = np.eye(n_out)[rng.integers(0, n_out, size=batch)]
    return W1, b1, W2, b2, X, y


_MLP_SCRATCH = Scratch()


def _mlp_primal(W1, b1, W2, b2, X, y):
    h = np.dot(X, W1, out=_MLP_SCRATCH("h", (X.shape[0], W1.shape[1])))
    h += b1
    np.tanh(h, out=h)
    z = h @ W2
    z += b2
    z -= z.max(axis=1, keepdims=True)            # shifted logits: the loss does not change
    e = np.exp(z)
    s = e.sum(axis=1)
    y_rows = y.sum(axis=1)                       # 1 per row for one-hot labels
    loss = (np.log(s) @ y_rows - np.vdot(y, z)) / z.shape[0]
    return float(loss), h, e, s, y_rows


def mlp_forward(W1, b1, W2, b2, X, y):
    return _mlp_primal(W1, b1, W2, b2, X, y)[0]


def mlp_value_and_grad(W1, b1, W2, b2, X, y):
    loss, h, e, s, y_rows = _mlp_primal(W1, b1, W2, b2, X, y)
    # d CE / d z = (softmax(z) * sum(y) - y) / batch
    d_z = e
    d_z *= (y_rows / s)[:, None]
    d_z -= y
    d_z *= 1.0 / d_z.shape[0]
    d_W2 = h.T @ d_z
    d_b2 = d_z.sum(axis=0)
    d_a = np.dot(d_z, W2.T, out=_MLP_SCRATCH("d_a", h.shape))
    h *= h                                       # tanh' = 1 - h^2
    np.subtract(1.0, h, out=h)
    d_a *= h
    return loss, (X.T @ d_a, d_a.sum(axis=0), d_W2, d_b2)


# ---------------------------------------------------------------------------------------------
# W5: 16 tanh layers of width 32 from stacked weights, batch 16, mean of squared output.

def deep_tanh(Ws, bs, x):
    h = x
    n = Ws.shape[0]
    for i in range(n):
        h = np.tanh(h @ Ws[i] + bs[i])
    return np.mean(h * h)


def deep_tanh_inputs(seed=5, depth=16, width=32, batch=16):
    rng = np.random.default_rng(seed)
    Ws = rng.normal(size=(depth, width, width)) / np.sqrt(width)
    bs = 0.1 * rng.normal(size=(depth, width))
    x = rng.normal(size=(batch, width))
    return Ws, bs, x


def _deep_tanh_primal(Ws, bs, x):
    """The loss and every layer's output, stacked: H[0] = x, H[i + 1] = layer i's output."""
    H = np.empty((len(Ws) + 1,) + x.shape)
    H[0] = x
    for i in range(len(Ws)):
        h = H[i + 1]
        np.dot(H[i], Ws[i], out=h)               # np.dot beats @ by ~0.4 µs on small arrays
        h += bs[i]
        np.tanh(h, out=h)
    return float(np.vdot(h, h)) / h.size, H


def deep_tanh_forward(Ws, bs, x):
    return _deep_tanh_primal(Ws, bs, x)[0]


def deep_tanh_value_and_grad(Ws, bs, x):
    loss, H = _deep_tanh_primal(Ws, bs, x)
    d_a = H[1:] ** 2
    np.subtract(1.0, d_a, out=d_a)               # tanh' = 1 - h^2, all layers in one call
    h = H[-1]
    d_h = h * (2.0 / h.size)                     # d mean(h^2) / d h
    for i in range(len(Ws) - 1, -1, -1):         # only the chain itself stays in the loop
        d_a[i] *= d_h
        if i:
            d_h = np.dot(d_a[i], Ws[i].T)
    # every layer's d_W = h_in^T d_a and d_b = sum over the batch of d_a, as two batched calls
    d_Ws = np.matmul(H[:-1].transpose(0, 2, 1), d_a)
    d_bs = np.ones(x.shape[0]) @ d_a
    return loss, (d_Ws, d_bs)


# ---------------------------------------------------------------------------------------------
# W6: a pre-layernorm transformer block: single-head attention (no mask), then a GELU MLP,
# each with a residual connection. Sequence 64, width 128, MLP 512; loss = mean(out^2).

def layernorm(x, g, c):
    mu = np.mean(x, axis=1, keepdims=True)
    xc = x - mu
    var = np.mean(xc * xc, axis=1, keepdims=True)
    return xc / np.sqrt(var + 1e-5) * g + c


def gelu(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def softmax_rows(s):
    m = np.max(s, axis=1, keepdims=True)
    e = np.exp(s - m)
    return e / np.sum(e, axis=1, keepdims=True)


def attention(x, Wq, Wk, Wv, Wo):
    q = x @ Wq
    k = x @ Wk
    v = x @ Wv
    p = softmax_rows(q @ k.T / np.sqrt(q.shape[1]))
    return p @ v @ Wo


def transformer_block(g1, c1, Wq, Wk, Wv, Wo, g2, c2, W1, b1, W2, b2, X):
    h = X + attention(layernorm(X, g1, c1), Wq, Wk, Wv, Wo)
    out = h + gelu(layernorm(h, g2, c2) @ W1 + b1) @ W2 + b2
    return np.mean(out * out)


def transformer_block_inputs(seed=6, seq=64, width=128, hidden=512):
    rng = np.random.default_rng(seed)

    def weight(n_in, n_out):
        return rng.normal(size=(n_in, n_out)) / np.sqrt(n_in)

    def near(center, n):
        return center + 0.1 * rng.normal(size=n)

    g1, c1 = near(1.0, width), near(0.0, width)
    Wq, Wk, Wv, Wo = (weight(width, width) for _ in range(4))
    g2, c2 = near(1.0, width), near(0.0, width)
    W1, b1 = weight(width, hidden), near(0.0, hidden)
    W2, b2 = weight(hidden, width), near(0.0, width)
    X = rng.normal(size=(seq, width))
    return g1, c1, Wq, Wk, Wv, Wo, g2, c2, W1, b1, W2, b2, X


_GELU_C = math.sqrt(2.0 / math.pi)
_BLOCK_SCRATCH = Scratch()


def _layernorm_primal(x, g, c, tag):
    """(layernorm(x), normalised x, 1/std), kept in scratch arrays named after `tag`."""
    x_hat = _BLOCK_SCRATCH(tag + "x_hat", x.shape)
    np.subtract(x, x.mean(axis=1, keepdims=True), out=x_hat)
    inv_std = np.einsum("ij,ij->i", x_hat, x_hat)
    inv_std *= 1.0 / x.shape[1]
    inv_std += 1e-5
    np.sqrt(inv_std, out=inv_std)
    np.divide(1.0, inv_std, out=inv_std)
    x_hat *= inv_std[:, None]
    y = np.multiply(x_hat, g, out=_BLOCK_SCRATCH(tag + "y", x.shape))
    y += c
    return y, x_hat, inv_std


def _layernorm_adjoint(d_y, x_hat, inv_std, g, tag, want_x=True):
    """(d_x, d_g, d_c), d_x = (d_xh - mean(d_xh) - xh mean(d_xh xh)) / std, d_xh = d_y g."""
    d_g = np.einsum("ij,ij->j", d_y, x_hat)
    d_c = d_y.sum(axis=0)
    if not want_x:
        return None, d_g, d_c
    d_xh = np.multiply(d_y, g, out=_BLOCK_SCRATCH(tag + "d_xh", d_y.shape))
    width = x_hat.shape[1]
    mean_dxh = d_xh.sum(axis=1, keepdims=True)
    mean_dxh *= 1.0 / width
    mean_dxh_xh = np.einsum("ij,ij->i", d_xh, x_hat)[:, None]
    mean_dxh_xh *= 1.0 / width
    d_xh -= mean_dxh
    d_xh -= np.multiply(x_hat, mean_dxh_xh, out=_BLOCK_SCRATCH(tag + "tmp", d_y.shape))
    d_xh *= inv_std[:, None]
    return d_xh, d_g, d_c


def _transformer_block_primal(g1, c1, Wq, Wk, Wv, Wo, g2, c2, W1, b1, W2, b2, X):
    buf = _BLOCK_SCRATCH
    seq, width = X.shape
    a1, xh1, inv1 = _layernorm_primal(X, g1, c1, "ln1.")
    q = np.dot(a1, Wq, out=buf("q", X.shape))
    k = np.dot(a1, Wk, out=buf("k", X.shape))
    v = np.dot(a1, Wv, out=buf("v", X.shape))
    p = np.dot(q, k.T, out=buf("p", (seq, seq)))
    p *= 1.0 / math.sqrt(width)
    p -= p.max(axis=1, keepdims=True)
    np.exp(p, out=p)
    p *= 1.0 / p.sum(axis=1, keepdims=True)     # softmax rows
    o = np.dot(p, v, out=buf("o", X.shape))
    h = np.dot(o, Wo, out=buf("h", X.shape))
    h += X
    a2, xh2, inv2 = _layernorm_primal(h, g2, c2, "ln2.")
    hidden = (seq, W1.shape[1])
    u = np.dot(a2, W1, out=buf("u", hidden))
    u += b1
    # gelu(u) = u (1 + tanh(y)) / 2 = u sigmoid(2y) with y = c (u + 0.044715 u^3): one exp
    # costs half a tanh. Where u < -21, exp overflows to inf and sigmoid is exactly 0.
    u2 = np.multiply(u, u, out=buf("u2", hidden))
    sg = np.multiply(u2, -2.0 * _GELU_C * 0.044715, out=buf("sg", hidden))
    sg -= 2.0 * _GELU_C
    sg *= u                                      # -2y
    np.exp(sg, out=sg)
    sg += 1.0
    np.divide(1.0, sg, out=sg)                   # sigmoid(2y)
    gl = np.multiply(u, sg, out=buf("gl", hidden))
    out = np.dot(gl, W2, out=buf("out", X.shape))
    out += b2
    out += h
    loss = float(np.vdot(out, out)) / out.size
    return loss, (xh1, inv1, a1, q, k, v, p, o, xh2, inv2, a2, u, u2, sg, gl, out)


def transformer_block_forward(g1, c1, Wq, Wk, Wv, Wo, g2, c2, W1, b1, W2, b2, X):
    return _transformer_block_primal(g1, c1, Wq, Wk, Wv, Wo, g2, c2, W1, b1, W2, b2, X)[0]


def transformer_block_value_and_grad(g1, c1, Wq, Wk, Wv, Wo, g2, c2, W1, b1, W2, b2, X):
    buf = _BLOCK_SCRATCH
    loss, saved = _transformer_block_primal(g1, c1, Wq, Wk, Wv, Wo, g2, c2, W1, b1, W2, b2, X)
    xh1, inv1, a1, q, k, v, p, o, xh2, inv2, a2, u, u2, sg, gl, out = saved
    d_out = out
    d_out *= 2.0 / out.size                      # d mean(out^2) = 2 out / size
    # MLP branch: out = h + gelu(u) @ W2 + b2
    d_W2 = gl.T @ d_out
    d_b2 = d_out.sum(axis=0)
    d_u = np.dot(d_out, W2.T, out=buf("d_u", u.shape))
    # gelu'(u) = sg + u sg (1 - sg) 2y'(u), with 2y'(u) = 2c (1 + 3 * 0.044715 u^2)
    u2 *= 6.0 * _GELU_C * 0.044715
    u2 += 2.0 * _GELU_C
    u2 *= u
    local = np.subtract(1.0, sg, out=gl)         # gl is not needed any more
    local *= sg
    local *= u2
    local += sg
    d_u *= local
    d_W1 = a2.T @ d_u
    d_b1 = d_u.sum(axis=0)
    d_a2 = np.dot(d_u, W1.T, out=buf("d_a2", out.shape))
    d_h, d_g2, d_c2 = _layernorm_adjoint(d_a2, xh2, inv2, g2, "ln2.")
    d_h += d_out                                 # residual
    # attention branch: h = X + softmax(q k^T / sqrt(d)) v Wo
    d_Wo = o.T @ d_h
    d_o = np.dot(d_h, Wo.T, out=buf("d_o", out.shape))
    d_v = np.dot(p.T, d_o, out=buf("d_v", out.shape))
    d_s = np.dot(d_o, v.T, out=buf("d_s", p.shape))
    # softmax adjoint: p * (d_p - sum(d_p p)), then the 1/sqrt(d) scale
    d_s -= np.einsum("ij,ij->i", d_s, p)[:, None]
    d_s *= p
    d_s *= 1.0 / math.sqrt(q.shape[1])
    d_q = np.dot(d_s, k, out=buf("d_q", out.shape))
    d_k = np.dot(d_s.T, q, out=buf("d_k", out.shape))
    d_a1 = np.dot(d_q, Wq.T, out=buf("d_a1", out.shape))
    d_a1 += np.dot(d_k, Wk.T, out=buf("tmp", out.shape))
    d_a1 += np.dot(d_v, Wv.T, out=buf("tmp", out.shape))
    a1T = a1.T
    d_Wq = a1T @ d_q
    d_Wk = a1T @ d_k
    d_Wv = a1T @ d_v
    _, d_g1, d_c1 = _layernorm_adjoint(d_a1, xh1, inv1, g1, "ln1.", want_x=False)
    return loss, (d_g1, d_c1, d_Wq, d_Wk, d_Wv, d_Wo, d_g2, d_c2, d_W1, d_b1, d_W2, d_b2)


# ---------------------------------------------------------------------------------------------

WORKLOADS = (
    Workload("W1", "line w*x+b, squared error, Python floats", line, line_inputs,
             ("w", "b"), line_forward, line_value_and_grad),
    Workload("W2", "scalar expression, 8 floats, ~65 ops", scalar_expr, scalar_expr_inputs,
             ("a", "b", "c", "d", "e", "f", "g", "h"), scalar_expr_forward,
             scalar_expr_value_and_grad),
    Workload("W3", "logistic regression 4096x64, stable BCE", logistic, logistic_inputs,
             ("w", "b"), logistic_forward, logistic_value_and_grad),
    Workload("W4", "MLP 784-256-10, batch 128, softmax CE", mlp, mlp_inputs,
             ("W1", "b1", "W2", "b2"), mlp_forward, mlp_value_and_grad),
    Workload("W5", "16 tanh layers, width 32, batch 16", deep_tanh, deep_tanh_inputs,
             ("Ws", "bs"), deep_tanh_forward, deep_tanh_value_and_grad),
    Workload("W6", "transformer block, seq 64, width 128, MLP 512", transformer_block,
             transformer_block_inputs,
             ("g1", "c1", "Wq", "Wk", "Wv", "Wo", "g2", "c2", "W1", "b1", "W2", "b2"),
             transformer_block_forward, transformer_block_value_and_grad),
)


def get(name):
    """The workload called `name` ("W1" .. "W6"), case-insensitive."""
    for workload in WORKLOADS:
        if workload.name.lower() == name.lower():
            return workload
    raise KeyError(f"no workload {name!r}; choose from {', '.join(w.name for w in WORKLOADS)}")
