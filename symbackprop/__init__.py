"""symbackprop: symbolic reverse-mode differentiation of Python+NumPy models into readable code."""
from .api import grad, value_and_grad
from .errors import CompileError

__all__ = ["grad", "value_and_grad", "CompileError"]
__version__ = "0.1.0"
