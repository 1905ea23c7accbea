"""symbackprop: symbolic reverse-mode differentiation of Python+NumPy models into readable code."""
from . import distributed, optim  # distributed imports Dask only when used
from .api import grad, hessian, hvp, jacobian, jvp, per_example_grad, value_and_grad, vjp, vmap
from .check import check_grad
from .errors import CompileError
from .frontend.custom import custom_jvp, custom_vjp
from .primitives.ops import stop_gradient
from .training import train_step

__all__ = ["grad", "value_and_grad", "jvp", "vjp", "jacobian", "hessian", "hvp", "check_grad", "CompileError", "custom_vjp", "custom_jvp",
           "vmap", "per_example_grad",
           "distributed", "optim", "stop_gradient", "train_step"]
__version__ = "0.1.0"
