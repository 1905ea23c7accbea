"""`.export("m.ll")` and `.export("m.so")`: IR llvmlite parses, and a library a C program links and runs."""
import re
import subprocess
import textwrap

import llvmlite.binding as llvm
import numpy as np
import pytest

import symbackprop as sb
import models


def mlp_args(rng):
    return [rng.normal(size=(6, 5)), rng.normal(size=5), rng.normal(size=(5, 3)), rng.normal(size=3),
            rng.normal(size=(4, 6)), np.eye(3)[[0, 1, 2, 0]]]


def test_ll_export_parses(tmp_path):
    f = sb.value_and_grad(models.mlp, wrt=("W1", "b1", "W2", "b2"), backend="llvm")
    path = tmp_path / "mlp.ll"
    f.export(path, *mlp_args(np.random.default_rng(0)))
    text = path.read_text()
    assert re.search(r"define i32 @\"?mlp_value_and_grad\"?\(", text)
    llvm.initialize_native_target()
    llvm.initialize_native_asmparser()
    llvm.parse_assembly(text).verify()


C_MAIN = """
#include <stdio.h>
#include <stdlib.h>
#include "mlp_grad.h"

static double *read_doubles(FILE *f, size_t n) {
    double *p = malloc(n * sizeof(double));
    if (fread(p, sizeof(double), n, f) != n) exit(3);
    return p;
}

int main(int argc, char **argv) {
    FILE *f = fopen(argv[1], "rb");
    double *W1 = read_doubles(f, 30), *b1 = read_doubles(f, 5), *W2 = read_doubles(f, 15);
    double *b2 = read_doubles(f, 3), *x = read_doubles(f, 24), *y = read_doubles(f, 12);
    double value, dW1[30], db1[5], dW2[15], db2[3];
    int status = mlp_value_and_grad(W1, b1, W2, b2, x, y, &value, dW1, db1, dW2, db2);
    printf("%d %.17g\\n", status, value);
    for (int i = 0; i < 30; i++) printf("%.17g\\n", dW1[i]);
    for (int i = 0; i < 5; i++) printf("%.17g\\n", db1[i]);
    for (int i = 0; i < 15; i++) printf("%.17g\\n", dW2[i]);
    for (int i = 0; i < 3; i++) printf("%.17g\\n", db2[i]);
    return 0;
}
"""


def test_so_export_links_into_a_c_program(tmp_path):
    rng = np.random.default_rng(1)
    args = mlp_args(rng)
    f = sb.value_and_grad(models.mlp, wrt=("W1", "b1", "W2", "b2"), backend="llvm")
    lib = tmp_path / "libmlp.so"
    f.export(lib, *args)
    header = tmp_path / "libmlp.h"
    assert header.exists()
    (tmp_path / "mlp_grad.h").write_text(header.read_text())
    text = header.read_text()
    assert "int mlp_value_and_grad(" in text and "const double* W1,  /* [6][5], C order */" in text
    deps = subprocess.run(["ldd", str(lib)], capture_output=True, text=True).stdout
    assert "python" not in deps and "openblas" not in deps and "numpy" not in deps, deps
    (tmp_path / "main.c").write_text(textwrap.dedent(C_MAIN))
    subprocess.run(["cc", "-O1", "-o", str(tmp_path / "main"), str(tmp_path / "main.c"), str(lib),
                    f"-Wl,-rpath,{tmp_path}", "-lm"], check=True, cwd=tmp_path)
    data = tmp_path / "inputs.bin"
    data.write_bytes(b"".join(np.ascontiguousarray(a, dtype=np.float64).tobytes() for a in args))
    out = subprocess.run([str(tmp_path / "main"), str(data)], capture_output=True, text=True, check=True).stdout
    lines = out.split()
    assert lines[0] == "0"
    got = np.array([float(t) for t in lines[1:]])
    value, grads = sb.value_and_grad(models.mlp, wrt=("W1", "b1", "W2", "b2"))(*args)
    want = np.concatenate([[value]] + [g.ravel() for g in grads])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_export_of_a_numpy_backend_function_to_so_works_too(tmp_path):
    f = sb.grad(models.matmul_2d)
    f(np.ones((2, 3)), np.ones((3, 2)))
    f.export(tmp_path / "m.so")
    assert (tmp_path / "m.h").read_text().count("const double*") == 2


def test_float32_export_header(tmp_path):
    f = sb.grad(models.matmul_2d, backend="llvm")
    f.export(tmp_path / "m32.so", np.ones((2, 3), np.float32), np.ones((3, 2), np.float32))
    assert "const float* A" in (tmp_path / "m32.h").read_text()


def test_unsupported_parameter_dtype_for_c_export_is_a_clear_error(tmp_path):
    f = sb.grad(models.comparison_mask)
    f(np.ones(3), np.ones(3))
    g = sb.grad(models.loop_with_helpers, wrt="W")
    g(np.ones((3, 2)), np.ones(2), np.ones((4, 3)), np.zeros((4, 2)), 2)
    g.export(tmp_path / "static.so")
    assert "specialised for n=2" in (tmp_path / "static.h").read_text()
    with pytest.raises(sb.CompileError, match="int64"):
        h = sb.grad(models.sigmoid_loss)
        h.export(tmp_path / "int.so", np.zeros(3), np.ones((4, 3)), np.ones(4, dtype=np.int64))
