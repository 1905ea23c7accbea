"""Matrix products for JIT code: NumPy's bundled OpenBLAS when present, else a blocked IR kernel.

JIT code calls BLAS through fixed names (DGEMM_SYMBOL, SGEMM_SYMBOL) bound to the library's
addresses by `cblas_symbols()`; exported code uses `emit_matmul`, which needs no library.
"""
import ctypes
import functools
import glob
import os
from dataclasses import dataclass

import numpy as np
from llvmlite import ir

DGEMM_SYMBOL = "symbackprop_cblas_dgemm"
SGEMM_SYMBOL = "symbackprop_cblas_sgemm"
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112

# (dgemm name, sgemm name, bits of the integer arguments), most specific first
_NAMES = (("scipy_cblas_dgemm64_", "scipy_cblas_sgemm64_", 64),
          ("cblas_dgemm64_", "cblas_sgemm64_", 64),
          ("scipy_cblas_dgemm", "scipy_cblas_sgemm", 32),
          ("cblas_dgemm", "cblas_sgemm", 32))

_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_SCALAR = {"float64": ir.DoubleType(), "float32": ir.FloatType()}


@dataclass(frozen=True)
class Cblas:
    """Addresses of a verified cblas_dgemm / cblas_sgemm pair."""
    dgemm: int
    sgemm: int
    int_bits: int
    library: str


@functools.cache
def find_cblas() -> Cblas | None:
    """The cblas gemm pair of NumPy's own BLAS (or one loaded globally), checked on a 2x3 @ 3x2 product."""
    numpy_dir = os.path.dirname(np.__file__)
    candidates = [path for folder in ("../numpy.libs", ".libs", ".dylibs")
                  for path in sorted(glob.glob(os.path.join(numpy_dir, folder, "*blas*")))]
    for path in candidates + [None]:                    # None: symbols already global in this process
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for dgemm, sgemm, bits in _NAMES:
            if hasattr(library, dgemm) and hasattr(library, sgemm):
                found = Cblas(_address(library, dgemm), _address(library, sgemm), bits, path or "process")
                if _works(found):
                    return found
    return None


def cblas_symbols() -> dict[str, int]:
    """{DGEMM_SYMBOL: address, SGEMM_SYMBOL: address} for `jit.compile_module(symbols=...)`; {} without BLAS."""
    found = find_cblas()
    return {} if found is None else {DGEMM_SYMBOL: found.dgemm, SGEMM_SYMBOL: found.sgemm}


def cblas_declarations() -> str:
    """LLVM IR text declaring both gemm functions under their fixed names."""
    module = ir.Module()
    for dtype in _SCALAR:
        declare_cblas_gemm(module, dtype)
    return "\n".join(line for line in str(module).splitlines() if line.startswith("declare"))


def declare_cblas_gemm(module: ir.Module, dtype: str = "float64") -> ir.Function:
    """Declare (once) `void gemm(i32 order, i32 ta, i32 tb, int m, n, k, T alpha, T* a, int lda, ...)`."""
    name = DGEMM_SYMBOL if dtype == "float64" else SGEMM_SYMBOL
    if name in module.globals:
        return module.globals[name]
    found = find_cblas()
    integer = _I64 if found is None or found.int_bits == 64 else _I32
    scalar, pointer = _SCALAR[dtype], ir.PointerType()
    arguments = [_I32, _I32, _I32, integer, integer, integer, scalar, pointer, integer, pointer, integer,
                 scalar, pointer, integer]
    return ir.Function(module, ir.FunctionType(ir.VoidType(), arguments), name)


def emit_cblas_gemm(builder: ir.IRBuilder, a: ir.Value, b: ir.Value, c: ir.Value, m: int, k: int, n: int,
                    dtype: str = "float64", trans_a: bool = False, trans_b: bool = False,
                    accumulate: bool = False) -> None:
    """C (m x n) = op(A) @ op(B), or C += ... with `accumulate`; row-major, pointers to contiguous data."""
    function = declare_cblas_gemm(builder.module, dtype)
    integer = function.function_type.args[3]
    scalar = _SCALAR[dtype]
    lda = m if trans_a else k
    ldb = k if trans_b else n
    builder.call(function, [ir.Constant(_I32, _ROW_MAJOR), ir.Constant(_I32, _TRANS if trans_a else _NO_TRANS),
                            ir.Constant(_I32, _TRANS if trans_b else _NO_TRANS),
                            ir.Constant(integer, m), ir.Constant(integer, n), ir.Constant(integer, k),
                            ir.Constant(scalar, 1.0), a, ir.Constant(integer, lda), b, ir.Constant(integer, ldb),
                            ir.Constant(scalar, 1.0 if accumulate else 0.0), c, ir.Constant(integer, n)])


def blas_worthwhile(m: int, k: int, n: int) -> bool:
    """Whether to call BLAS: measured on par with emit_matmul up to 64^3 and ahead beyond (2x at 256^3);
    below 32^3 the inline kernel costs the same and LLVM can unroll and fuse it."""
    return find_cblas() is not None and m * k * n >= 32 ** 3


def emit_matmul(module: ir.Module, name: str, m: int, k: int, n: int, dtype: str = "float64",
                trans_a: bool = False, trans_b: bool = False, accumulate: bool = False,
                linkage: str = "internal") -> ir.Function:
    """Define `void name(T* a, T* b, T* c)`: C (m x n) = op(A) @ op(B) (or +=), register-blocked, no library.

    A is m x k (k x m with trans_a), B is k x n (n x k with trans_b), all row-major and contiguous.
    """
    scalar = _SCALAR[dtype]
    pointer = ir.PointerType()
    function = ir.Function(module, ir.FunctionType(ir.VoidType(), [pointer] * 3), name)
    function.linkage = linkage
    for argument in function.args:
        argument.add_attribute("noalias")
    builder = ir.IRBuilder(function.append_basic_block("entry"))
    a, b, c = function.args
    kernel = _Kernel(builder, scalar, accumulate)
    if not trans_b:
        # C[i, j:j+w] += A[i, p] * B[p, j:j+w]; element (i, p) of A sits at i*k + p, or p*m + i stored transposed
        kernel.outer(m, n, k, lhs=(a, 1, m) if trans_a else (a, k, 1), rhs=(b, n), out=(n, 1), c=c)
    elif trans_a:
        # C^T = B_stored @ A_stored: rows of A_stored (k x m) are contiguous; results scatter into C
        kernel.outer(n, m, k, lhs=(b, k, 1), rhs=(a, m), out=(1, n), c=c)
    else:
        # C[i, j] = A[i, :] . B_stored[j, :], both contiguous along k
        kernel.dots(m, n, k, a, b, c)
    builder.ret_void()
    return function


class _Kernel:
    """Emits the register-blocked loops of emit_matmul; all sizes and strides are constants."""

    def __init__(self, builder, scalar, accumulate):
        self.b = builder
        self.scalar = scalar
        self.accumulate = accumulate
        self.size = 8 if isinstance(scalar, ir.DoubleType) else 4
        self.width = 64 // self.size                    # one zmm or two ymm per row of a tile
        self.rows = 6                                   # 6 x 8 doubles: 12 ymm accumulators fit AVX2's 16

    def outer(self, rows, cols, depth, lhs, rhs, out, c):
        """out[r, s] = sum_p lhs[r, p] rhs[p, s], rhs rows contiguous; tiles of self.rows x self.width."""
        # column panels outermost: a depth x width panel of rhs stays in L1 while the rows stream by
        for col0, width, col_count in self._tiles(cols, self.width):
            for row0, height, row_count in self._tiles(rows, self.rows):
                def panel(j0, height=height, width=width, row0=row0, row_count=row_count):
                    self._for(row_count, height, row0,
                              lambda i0: self._outer_tile(i0, j0, height, width, depth, lhs, rhs, out, c))
                self._for(col_count, width, col0, panel)

    def _outer_tile(self, i0, j0, height, width, depth, lhs, rhs, out, c):
        vector = ir.VectorType(self.scalar, width)
        zero = ir.Constant(vector, [0.0] * width)
        sums = self._loop(depth, 1, 0, [zero] * height,
                          lambda p, acc: self._outer_step(p, i0, j0, width, lhs, rhs, acc))
        for r, value in enumerate(sums):
            row = self._plus(i0, r)
            if out[1] == 1:
                self._store(c, self._at(row, j0, out), value)
            else:                                       # transposed result: one element at a time
                for s in range(width):
                    element = self.b.extract_element(value, ir.Constant(_I32, s))
                    self._store(c, self._at(row, self._plus(j0, s), out), element)

    def _outer_step(self, p, i0, j0, width, lhs, rhs, sums):
        vector = ir.VectorType(self.scalar, width)
        (left, row_stride, depth_stride), (right, right_stride) = lhs, rhs
        right_row = self._load(right, self._at(p, j0, (right_stride, 1)), vector)
        mask = ir.Constant(ir.VectorType(_I32, width), [0] * width)
        out = []
        for r, acc in enumerate(sums):
            element = self._load(left, self._at(self._plus(i0, r), p, (row_stride, depth_stride)), self.scalar)
            lane0 = self.b.insert_element(ir.Constant(vector, ir.Undefined), element, ir.Constant(_I32, 0))
            splat = self.b.shuffle_vector(lane0, ir.Constant(vector, ir.Undefined), mask)
            out.append(self._fma(splat, right_row, acc))
        return out

    def dots(self, m, n, depth, a, b, c):
        """c[i, j] = a[i, :] . b[j, :] in tiles of 4 x 2 dot products, vectorised along depth."""
        for col0, width, col_count in self._tiles(n, 2):
            for row0, height, row_count in self._tiles(m, 4):
                def panel(j0, height=height, width=width, row0=row0, row_count=row_count):
                    self._for(row_count, height, row0,
                              lambda i0: self._dot_tile(i0, j0, height, width, depth, n, a, b, c))
                self._for(col_count, width, col0, panel)

    def _dot_tile(self, i0, j0, height, width, depth, n, a, b, c):
        pairs = [(r, s) for r in range(height) for s in range(width)]
        totals = [ir.Constant(self.scalar, 0.0)] * len(pairs)
        full, rest = divmod(depth, self.width)
        # full vectors along depth, then one shorter vector for the remainder
        for lanes, count, start in ((self.width, full, 0), (rest, int(rest > 0), full * self.width)):
            if count == 0:
                continue
            vector = ir.VectorType(self.scalar, lanes)
            zero = ir.Constant(vector, [0.0] * lanes)

            def step(p, sums, vector=vector):
                rows = [self._load(a, self._at(self._plus(i0, r), p, (depth, 1)), vector) for r in range(height)]
                cols = [self._load(b, self._at(self._plus(j0, s), p, (depth, 1)), vector) for s in range(width)]
                return [self._fma(rows[r], cols[s], acc) for (r, s), acc in zip(pairs, sums)]

            sums = self._loop(count, lanes, start, [zero] * len(pairs), step)
            totals = [self.b.fadd(total, self._reduce(value)) for total, value in zip(totals, sums)]
        for (r, s), total in zip(pairs, totals):
            self._store(c, self._at(self._plus(i0, r), self._plus(j0, s), (n, 1)), total)

    # ---- helpers

    @staticmethod
    def _tiles(size, step):
        """(first index, tile size, tile count) of the full tiles and of the remainder."""
        full, rest = divmod(size, step)
        return [(0, step, full)] * (full > 0) + [(full * step, rest, 1)] * (rest > 0)

    def _for(self, count, step, start, body):
        self._loop(count, step, start, [], lambda index, _: body(index) and [])

    def _loop(self, count, step, start, carried, body):
        """for index in range(start, start + count*step, step): carried = body(index, carried)."""
        builder = self.b
        before = builder.block
        head = builder.append_basic_block("loop")
        after = builder.append_basic_block("after")
        builder.branch(head)
        builder.position_at_end(head)
        index = builder.phi(_I64)
        index.add_incoming(ir.Constant(_I64, start), before)
        phis = []
        for value in carried:
            phi = builder.phi(value.type)
            phi.add_incoming(value, before)
            phis.append(phi)
        results = body(index, phis) or []
        following = builder.add(index, ir.Constant(_I64, step))
        end = builder.block
        index.add_incoming(following, end)
        for phi, value in zip(phis, results):
            phi.add_incoming(value, end)
        builder.cbranch(builder.icmp_signed("<", following, ir.Constant(_I64, start + count * step)), head, after)
        builder.position_at_end(after)
        return results

    def _plus(self, index, offset):
        return self.b.add(index, ir.Constant(_I64, offset))

    def _at(self, row, col, strides):
        return self.b.add(self.b.mul(row, ir.Constant(_I64, strides[0])),
                          self.b.mul(col, ir.Constant(_I64, strides[1])))

    def _fma(self, a, b, c):
        element = "f64" if self.size == 8 else "f32"
        suffix = f"v{a.type.count}{element}" if isinstance(a.type, ir.VectorType) else element
        return self.b.call(self._intrinsic(f"llvm.fma.{suffix}", a.type, [a.type] * 3), [a, b, c])

    def _intrinsic(self, name, result, arguments):
        module = self.b.module
        return module.globals.get(name) or ir.Function(module, ir.FunctionType(result, arguments), name)

    def _reduce(self, value):
        vector = value.type
        name = f"llvm.vector.reduce.fadd.v{vector.count}{'f64' if self.size == 8 else 'f32'}"
        function = self._intrinsic(name, self.scalar, [self.scalar, vector])
        # reassoc lets LLVM add pairwise instead of lane by lane
        return self.b.call(function, [ir.Constant(self.scalar, -0.0), value], fastmath=("reassoc",))

    def _load(self, base, index, ty):
        return self.b.load(self.b.gep(base, [index], source_etype=self.scalar), typ=ty, align=self.size)

    def _store(self, base, index, value):
        pointer = self.b.gep(base, [index], source_etype=self.scalar)
        if self.accumulate:
            value = self.b.fadd(self.b.load(pointer, typ=value.type, align=self.size), value)
        self.b.store(value, pointer, align=self.size)


def _address(library, name):
    return ctypes.cast(getattr(library, name), ctypes.c_void_p).value


def _works(found):
    """Call dgemm through ctypes on a known product: a wrong guess of the ABI fails here, not in JIT code."""
    integer = ctypes.c_int64 if found.int_bits == 64 else ctypes.c_int32
    pointer = ctypes.c_void_p
    gemm = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, ctypes.c_int, integer, integer, integer,
                            ctypes.c_double, pointer, integer, pointer, integer, ctypes.c_double, pointer,
                            integer)(found.dgemm)
    a = np.arange(6.0).reshape(2, 3)
    b = np.arange(6.0).reshape(3, 2) - 2.0
    c = np.full((2, 2), np.nan)
    gemm(_ROW_MAJOR, _NO_TRANS, _NO_TRANS, 2, 2, 3, 1.0, a.ctypes.data, 3, b.ctypes.data, 2, 0.0, c.ctypes.data, 2)
    return bool(np.array_equal(c, a @ b))
