"""The process-wide LLJIT: compiling, symbol resolution, errors, threads and object export."""
import ctypes
import threading

import pytest

from symbackprop.backends.llvm import jit

TWICE = """
define double @twice(double %x) {
  %y = fmul double %x, 2.0
  ret double %y
}
"""
CALLS_MISSING = """
declare double @no_such_function_anywhere(double)
define double @f(double %x) {
  %y = call double @no_such_function_anywhere(double %x)
  ret double %y
}
"""
DOUBLE_TO_DOUBLE = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double)
SAXPY_LOOP = """
define void @scale(ptr noalias %x, ptr noalias %y, i64 %n) {
entry:
  br label %loop
loop:
  %i = phi i64 [0, %entry], [%next, %loop]
  %p = getelementptr double, ptr %x, i64 %i
  %v = load double, ptr %p
  %w = fmul double %v, 3.0
  %q = getelementptr double, ptr %y, i64 %i
  store double %w, ptr %q
  %next = add i64 %i, 1
  %more = icmp slt i64 %next, %n
  br i1 %more, label %loop, label %done
done:
  ret void
}
"""


def test_compiled_function_runs():
    module = jit.compile_module(TWICE)
    assert module.names == ("twice",)
    assert DOUBLE_TO_DOUBLE(module.address("twice"))(21.0) == 42.0


def test_unresolved_symbol_raises_instead_of_crashing():
    with pytest.raises(RuntimeError, match="no_such_function_anywhere"):
        jit.compile_module(CALLS_MISSING)


def test_symbols_argument_resolves_declarations():
    libm_cos = ctypes.cast(ctypes.CDLL(None).cos, ctypes.c_void_p).value
    module = jit.compile_module(CALLS_MISSING, {"no_such_function_anywhere": libm_cos})
    assert DOUBLE_TO_DOUBLE(module.address("f"))(0.0) == 1.0


def test_process_symbols_resolve_without_help():
    module = jit.compile_module(CALLS_MISSING.replace("no_such_function_anywhere", "sqrt"))
    assert DOUBLE_TO_DOUBLE(module.address("f"))(16.0) == 4.0


def test_invalid_ir_is_a_value_error():
    with pytest.raises(ValueError, match="invalid LLVM IR"):
        jit.compile_module("define double @broken( {")
    with pytest.raises(ValueError, match="invalid LLVM IR"):   # parses, fails verification
        jit.compile_module("define i32 @f() {\n  ret double 1.0\n}")


def test_unknown_name_is_a_key_error():
    with pytest.raises(KeyError, match="twice"):
        jit.compile_module(TWICE).address("thrice")


def test_loops_are_vectorised_for_host_and_portable_cpu():
    assert "x double>" in jit.optimize_ir(SAXPY_LOOP)
    portable = jit.optimize_ir(SAXPY_LOOP, cpu="x86-64-v3")
    assert "<4 x double>" in portable and "<8 x double>" not in portable


def test_compilation_from_many_threads():
    results, errors = {}, []

    def work(k):
        try:
            text = TWICE.replace("@twice", f"@times{k}").replace("2.0", f"{k}.0")
            module = jit.compile_module(text)
            results[k] = DOUBLE_TO_DOUBLE(module.address(f"times{k}"))(2.0)
        except Exception as error:          # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and results == {k: 2.0 * k for k in range(1, 9)}


def test_emit_object_is_an_elf_object_with_the_symbol():
    data = jit.emit_object(TWICE)
    assert data[:4] == b"\x7fELF"
    assert b"twice" in data


def test_host_description():
    assert jit.host_cpu_name()
    assert isinstance(jit.host_features(), str)
