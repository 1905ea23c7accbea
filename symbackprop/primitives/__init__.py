"""Array primitives, one module per family; importing this registers them all."""
from ..ir import use_arithmetic
from . import registry, scalar, elementwise, ops, reduce, index, gather, shape, linalg, composite, custom, kernel_adjoint, control  # noqa: F401

use_arithmetic(ops)
