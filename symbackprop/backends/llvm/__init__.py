"""LLVM backend: the optimised IR lowered to one LLVM function, JIT-compiled, or exported as .ll/.so.

`backend.LLVMBackend.build(program)` gives a Program its LLVM IR and a Python
callable; `.export(program, path)` writes IR text or a shared library with a
C header. Anything the lowering cannot handle raises CompileError naming it:
there is no fallback to NumPy.
"""
