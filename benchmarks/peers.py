"""The six workloads in JAX, PyTorch and autograd (HIPS), as `harness.Impl`s.

- JAX: `jax.jit(jax.value_and_grad(model, argnums=...))` with x64 on, one thread (XLA_FLAGS).
- autograd: `autograd.value_and_grad(model, argnum=...)`.
  Both run the very model source in benchmarks/workloads.py, with `np` bound to jax.numpy or
  autograd.numpy: the code a user of either would write.
- PyTorch: eager float64 on one thread, `torch.autograd.grad`. W1 and W2 run the model source
  with `np` bound to torch; W3-W6 are written as a PyTorch user would, with the fused
  built-ins (addmm, softmax, layer_norm, gelu, the cross-entropies).
A peer that is not installed is skipped with one line.
"""

import types

import numpy as np

from benchmarks import workloads
from benchmarks.harness import Impl, skip


def rebind(np_module):
    """Copies of every function in benchmarks.workloads that see `np` as `np_module`."""
    namespace = dict(vars(workloads), np=np_module)
    for name, obj in vars(workloads).items():
        if isinstance(obj, types.FunctionType) and obj.__module__ == workloads.__name__:
            namespace[name] = types.FunctionType(obj.__code__, namespace, name,
                                                 obj.__defaults__, obj.__closure__)
    return namespace


def _import(peer, module):
    try:
        return __import__(module, fromlist=["_"])
    except Exception as exc:
        skip(f"{peer}: not installed ({type(exc).__name__}: {exc})")
        return None


# --- JAX -------------------------------------------------------------------------------------

def jax_impls(workload):
    jax = _import("jax", "jax")
    if jax is None:
        return []
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    model = rebind(jnp)[workload.model.__name__]
    value_and_grad = jax.jit(jax.value_and_grad(model, argnums=workload.wrt_indices))
    forward = jax.jit(model)
    block = jax.block_until_ready
    args = tuple(jnp.asarray(a) if isinstance(a, np.ndarray) else a
                 for a in workload.make_inputs())     # Python floats stay Python floats
    return [Impl("jax", lambda *a: block(value_and_grad(*a)), lambda *a: block(forward(*a)),
                 args)]


# --- autograd --------------------------------------------------------------------------------

def autograd_impls(workload):
    autograd = _import("autograd", "autograd")
    if autograd is None:
        return []
    import autograd.numpy as anp
    model = rebind(anp)[workload.model.__name__]
    return [Impl("autograd", autograd.value_and_grad(model, argnum=workload.wrt_indices), model,
                 workload.make_inputs())]


# --- PyTorch ---------------------------------------------------------------------------------

def _torch_models(torch):
    """The six models in PyTorch, by workload name."""
    F = torch.nn.functional

    def logistic(w, b, X, y):
        return F.binary_cross_entropy_with_logits(X @ w + b, y)

    def mlp(W1, b1, W2, b2, X, y):
        h = torch.tanh(torch.addmm(b1, X, W1))
        return F.cross_entropy(torch.addmm(b2, h, W2), y)     # y: one-hot class probabilities

    def deep_tanh(Ws, bs, x):
        h = x
        for i in range(Ws.shape[0]):
            h = torch.tanh(torch.addmm(bs[i], h, Ws[i]))
        return (h * h).mean()

    def transformer_block(g1, c1, Wq, Wk, Wv, Wo, g2, c2, W1, b1, W2, b2, X):
        width = X.shape[1]
        a = F.layer_norm(X, (width,), g1, c1, eps=1e-5)
        q, k, v = a @ Wq, a @ Wk, a @ Wv
        p = torch.softmax(q @ k.T / width ** 0.5, dim=1)
        h = X + p @ v @ Wo
        u = torch.addmm(b1, F.layer_norm(h, (width,), g2, c2, eps=1e-5), W1)
        out = h + torch.addmm(b2, F.gelu(u, approximate="tanh"), W2)
        return (out * out).mean()

    # The scalar models use only functions torch has under NumPy's names: they run as written.
    as_written = rebind(torch)
    return {"W1": as_written["line"], "W2": as_written["scalar_expr"], "W3": logistic, "W4": mlp,
            "W5": deep_tanh, "W6": transformer_block}


def torch_impls(workload):
    torch = _import("torch", "torch")
    if torch is None:
        return []
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)      # allowed once, before any parallel work
    except RuntimeError:
        pass
    model = _torch_models(torch)[workload.name]
    wrt = workload.wrt_indices

    def tensor(i, a):
        if isinstance(a, float) and i not in wrt:
            return a                                  # a constant stays a Python float
        t = torch.tensor(a, dtype=torch.float64) if isinstance(a, float) else torch.from_numpy(a)
        return t.requires_grad_(i in wrt)

    def value_and_grad(*args):
        loss = model(*args)
        return loss.detach(), torch.autograd.grad(loss, [args[i] for i in wrt])

    def forward(*args):
        with torch.no_grad():
            return model(*args)

    def to_numpy(result):
        loss, grads = result
        return float(loss), tuple(g.numpy().astype(np.float64) for g in grads)

    args = tuple(tensor(i, a) for i, a in enumerate(workload.make_inputs()))
    return [Impl("torch", value_and_grad, forward, args, to_numpy)]


def peer_impls(workload):
    """Every installed peer's implementation of `workload`."""
    return jax_impls(workload) + torch_impls(workload) + autograd_impls(workload)
