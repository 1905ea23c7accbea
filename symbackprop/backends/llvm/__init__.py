"""LLVM backend: JIT, inline vector math, BLAS access and the Python call bridge."""
