"""Inline, vectorisable math for LLVM IR: FMA polynomials and bit tricks, no libm calls.

Each function takes an IRBuilder and a double, float, <N x double> or <N x float> value and
returns a value of the same type, with no branches and no calls, so the loop vectoriser
widens it. float32 is evaluated in float64 with shorter polynomials and rounded once.
Polynomials are Remez minimax fits (mpmath), leading coefficients rounded first and the
rest refitted; measured errors are asserted in tests/llvm_infra/test_vecmath.py.
"""
import math
import struct

from llvmlite import ir

from ...primitives import scalar

_DOUBLE = ir.DoubleType()
_I64 = ir.IntType(64)
_INF = math.inf

# (float64 coefficients, float32 coefficients) of each polynomial, lowest degree first.
_EXPM1 = ((0.16666666666666677, 0.041666666666666644, 0.00833333333332126, 0.001388888888889385,
           0.00019841269887377707, 2.4801587317809355e-05, 2.7557242661229115e-06,
           2.7557267557169783e-07, 2.5109690439626268e-08, 2.092142384276068e-09),
          (0.16666666749020273, 0.041666666316766646, 0.008333290271044735, 0.0013888946519956746,
           0.00019904229279786925, 2.480940379153755e-05))        # expm1 r = r + r^2/2 + r^3 P(r), |r| <= ln2/2
_LOG = ((0.6666666666666735, 0.3999999999940859, 0.2857142874396797, 0.22222198391279854,
         0.18183574692706553, 0.15313763961199403, 0.14799016233605528),
        (0.6666666563656619, 0.40000337385536944, 0.2853715877553562, 0.23585173116766978))
                                                                    # R(z) = (2 atanh s - 2s)/s = z P(z), z = s^2 <= 0.0295
_LOG_TAIL = (0.4000000000000229, 0.2857142857008277, 0.2222222252306529, 0.1818178408074374,
             0.15386771007674646, 0.13256488833149505, 0.13199471675690772)
                                                                    # 2 atanh s = 2s + 2s^3/3 + s^5 Q(s^2), for pow
_TANH = ((-0.3333333333333329, 0.13333333333325623, -0.0539682539631682, 0.021869488368533276,
          -0.008863232311675209, 0.0035920890441546805, -0.0014555232406767175, 0.0005883623039659077,
          -0.000233168667620439, 8.300598502607692e-05, -1.92998222575271e-05),
         (-0.33333333309105523, 0.13333331293893755, -0.05396767086641793, 0.0218615358461033,
          -0.00880462902350395, 0.0033499628268303773, -0.0009113622709732492))  # tanh x = x + x^3 P(x^2), |x| < 0.55
_SINH = ((0.16666666666666669, 0.008333333333332912, 0.0001984126984159341, 2.7557319106755694e-06,
          2.5052130999230924e-08, 1.6056659079230725e-10, 7.77660520450879e-13),
         (0.1666666666704749, 0.008333333278450502, 0.00019841295406638996, 2.755214023708679e-06,
          2.55266909728082e-08))                                    # sinh x = x + x^3 P(x^2), |x| < 1
_SIN = ((-0.1666666666666663, 0.00833333333332184, -0.0001984126982935853, 2.7557313538516445e-06,
         -2.5050734389825462e-08, 1.589543333602941e-10),
        (-0.16666666640786612, 0.008333329303627091, -0.00019839311876646237, 2.7181178658533338e-06))
                                                                    # sin r = r + r^3 P(r^2), |r| <= pi/4
_COS = ((0.041666666666666595, -0.001388888888887334, 2.4801587288999782e-05, -2.755731421617016e-07,
         2.0875705255772945e-09, -1.1358741027013769e-11),
        (0.041666666619472895, -0.0013888883498496686, 2.4799459739658612e-05, -2.7205720004513724e-07))
                                                                    # cos r = 1 - r^2/2 + r^4 P(r^2)
_ATAN = ((-0.3333333333333292, 0.19999999999873713, -0.14285714272261688, 0.11111110394968231,
          -0.090908868711815, 0.07691872147005924, -0.06661032973458544, 0.058333154334209145,
          -0.04975876825125401, 0.03650936132517763, -0.01626456063841719),
         (-0.3333333325754469, 0.19999989735924484, -0.1428524203387831, 0.11100732181272331,
          -0.08967262406458508, 0.06860487495238982, -0.035676501778255994))  # atan t = t + t^3 P(t^2), |t| <= 7/16
_ASIN = ((0.1666666666666676, 0.0749999999997081, 0.04464285717464543, 0.03038194270474757,
          0.02237221510331459, 0.017351609502794345, 0.013980854995701718, 0.011398599546894834,
          0.010782158848910805, 0.0036986837357594754, 0.021727418106043173, -0.021028872375776674,
          0.03264817532183133),
         (0.16666666627334764, 0.07500004981687608, 0.04464070793239893, 0.030426521544928604,
          0.02186572810010458, 0.02064635496193429, 0.001979091807915509, 0.03291180181558584))
                                                                    # asin x = x + x^3 P(x^2), |x| <= 1/2

_H = float.fromhex
_MAGIC = 6755399441055744.0                  # 1.5 * 2^52: x + MAGIC rounds x to an integer kept in the low bits
_LOG2E = _H("0x1.71547652b82fep+0")
_LN2 = (_H("0x1.62e42fefa39efp-1"), _H("0x1.abc9e3b39803fp-56"))      # n * hi is exact inside an FMA
_LN2_FDLIBM = (_H("0x1.62e42fee00000p-1"), _H("0x1.a39ef35793c76p-33"))  # hi has 32 zero bits: k * hi exact
_LN2_42 = (_H("0x1.62e42fefa3800p-1"), _H("0x1.ef35793c76730p-45"))   # k * hi exact for |k| < 2^11
_TWO_THIRDS = (_H("0x1.5555555555555p-1"), _H("0x1.5555555555555p-55"))
_TWO_OVER_PI = _H("0x1.45f306dc9c883p-1")
_PIO2 = (_H("0x1.921fb54442d18p+0"), _H("0x1.1a62633145c07p-54"), -_H("0x1.f1976b7ed8fbcp-110"))
_PI = (_H("0x1.921fb54442d18p+1"), _H("0x1.1a62633145c07p-53"))
_ATAN_BASE = ((0.0, 0.0), (_H("0x1.dac670561bb4fp-2"), _H("0x1.a2b7f222f65e2p-56")),
              (_H("0x1.921fb54442d18p-1"), _H("0x1.1a62633145c07p-55")),
              (_H("0x1.f730bd281f69bp-1"), _H("0x1.007887af0cbbdp-56")), (_PIO2[0], _PIO2[1]))

# floor(2/pi * 2^1400): the bits Payne-Hanek reduction needs for arguments up to 2^1024.
_TWO_OVER_PI_BITS = int(
    "a2f9836e4e441529fc2757d1f534ddc0db6295993c439041fe5163abdebbc561b7246e3a424dd2e006492eea"
    "09d1921cfe1deb1cb129a73ee88235f52ebb4484e99c7026b45f7e413991d639835339f49c845f8bbdf9283b"
    "1ff897ffde05980fef2f118b5a0a6d1f6d367ecf27cb09b74f463f669e5fea2d7527bac7ebe5f17b3d0739f7"
    "8a5292ea6bfb5fb11f8d5d0856033046fc7b6babf0cfbc209af4361da9e391615ee61b086599855f14a068", 16)
_PH_MIN_EXPONENT = 28          # below 2^28 the three-part Cody-Waite reduction is exact enough
_PH_BUCKET = 8                 # one table row per 8 binades
_PH_ROWS = 125
_PH_SCALED_ROW = 47            # from here on x is scaled by 2^-192 and the row by 2^192 (keeps it normal)


class _Math:
    """Arithmetic on double or <N x double> values through one builder; Python numbers become constants."""

    def __init__(self, builder, ty, single):
        self.b = builder
        self.ty = ty
        self.lanes = ty.count if isinstance(ty, ir.VectorType) else None
        self.ity = _I64 if self.lanes is None else ir.VectorType(_I64, self.lanes)
        self.single = single

    def pick(self, coefficients):
        return coefficients[1] if self.single else coefficients[0]

    def f(self, v):
        if isinstance(v, ir.Value):
            return v
        return ir.Constant(self.ty, float(v) if self.lanes is None else [float(v)] * self.lanes)

    def i(self, v):
        if isinstance(v, ir.Value):
            return v
        return ir.Constant(self.ity, int(v) if self.lanes is None else [int(v)] * self.lanes)

    def add(self, a, b):
        return self.b.fadd(self.f(a), self.f(b))

    def sub(self, a, b):
        return self.b.fsub(self.f(a), self.f(b))

    def mul(self, a, b):
        return self.b.fmul(self.f(a), self.f(b))

    def div(self, a, b):
        return self.b.fdiv(self.f(a), self.f(b))

    def neg(self, a):
        return self.b.fneg(self.f(a))

    def intrinsic(self, name, *args):
        suffix = "f64" if self.lanes is None else f"v{self.lanes}f64"
        full = f"llvm.{name}.{suffix}"
        module = self.b.module
        function = module.globals.get(full)
        if function is None:
            function = ir.Function(module, ir.FunctionType(self.ty, [self.ty] * len(args)), full)
        return self.b.call(function, [self.f(a) for a in args])

    def fma(self, a, b, c):
        return self.intrinsic("fma", a, b, c)

    def fabs(self, a):
        return self.intrinsic("fabs", a)

    def copysign(self, magnitude, sign):
        return self.intrinsic("copysign", magnitude, sign)

    def rint(self, a):
        return self.intrinsic("rint", a)

    def sqrt(self, a):
        return self.intrinsic("sqrt", a)

    def cmp(self, op, a, b):
        return self.b.fcmp_ordered(op, self.f(a), self.f(b))

    def isnan(self, a):
        return self.b.fcmp_unordered("uno", a, a)

    def select(self, cond, a, b):
        return self.b.select(cond, self.f(a), self.f(b))

    def iselect(self, cond, a, b):
        return self.b.select(cond, self.i(a), self.i(b))

    def bits(self, a):
        return self.b.bitcast(self.f(a), self.ity)

    def from_bits(self, n):
        return self.b.bitcast(self.i(n), self.ty)

    def iadd(self, a, b):
        return self.b.add(self.i(a), self.i(b))

    def isub(self, a, b):
        return self.b.sub(self.i(a), self.i(b))

    def iand(self, a, b):
        return self.b.and_(self.i(a), self.i(b))

    def icmp(self, op, a, b):
        return self.b.icmp_signed(op, self.i(a), self.i(b))

    def ashr(self, a, bits):
        return self.b.ashr(self.i(a), self.i(bits))

    def lshr(self, a, bits):
        return self.b.lshr(self.i(a), self.i(bits))

    def shl(self, a, bits):
        return self.b.shl(self.i(a), self.i(bits))

    def both(self, a, b):
        return self.b.and_(a, b)

    def either(self, a, b):
        return self.b.or_(a, b)

    def poly(self, t, coefficients):
        acc = self.f(coefficients[-1])
        for c in reversed(coefficients[:-1]):
            acc = self.fma(acc, t, c)
        return acc

    def two_sum(self, a, b):
        """a + b = s + e exactly."""
        s = self.add(a, b)
        bb = self.sub(s, a)
        return s, self.add(self.sub(a, self.sub(s, bb)), self.sub(b, bb))

    def fast_two_sum(self, a, b):
        """a + b = s + e exactly when |a| >= |b|."""
        s = self.add(a, b)
        return s, self.add(self.sub(a, s), b)

    def two_prod(self, a, b):
        p = self.mul(a, b)
        return p, self.fma(a, b, self.neg(p))

    def nearest_int(self, x, scale):
        """rint(x * scale) as a double and as an integer, for |x * scale| < 2^51."""
        k = self.fma(x, scale, _MAGIC)
        return self.sub(k, _MAGIC), self.isub(self.bits(k), self.bits(_MAGIC))

    def int_to_float(self, n):
        """Exact for |n| < 2^51, and vectorises where sitofp on i64 would not (AVX2)."""
        return self.sub(self.from_bits(self.iadd(n, self.bits(_MAGIC))), _MAGIC)

    def pow2(self, n):
        """2^n for integer -1022 <= n <= 1023."""
        return self.from_bits(self.shl(self.iadd(n, 1023), 52))

    def ldexp(self, p, n):
        """p * 2^n for |n| < 2040, rounding once even when the result is subnormal."""
        half = self.ashr(n, 1)
        return self.mul(self.mul(p, self.pow2(half)), self.pow2(self.isub(n, half)))

    def clamp(self, x, low, high):
        """Clamp that lets NaN through (minnum would turn it into a number)."""
        x = self.select(self.cmp(">", x, high), high, x)
        return self.select(self.cmp("<", x, low), low, x)

    def lookup(self, table, index):
        """table[index] for an integer index per lane (a gather once vectorised)."""
        if self.lanes is None:
            return self.b.load(self.b.gep(table, [ir.Constant(_I64, 0), index], inbounds=True,
                                          source_etype=table.value_type), typ=_DOUBLE)
        out = ir.Constant(self.ty, ir.Undefined)
        for lane in range(self.lanes):
            position = ir.Constant(ir.IntType(32), lane)
            pointer = self.b.gep(table, [ir.Constant(_I64, 0), self.b.extract_element(index, position)],
                                 inbounds=True, source_etype=table.value_type)
            out = self.b.insert_element(out, self.b.load(pointer, typ=_DOUBLE), position)
        return out


# ---------------------------------------------------------------- exp family

def _exp_parts(m, x, x_lo=None):
    """exp(x + x_lo) = 2^n (1 + r + t) with |r| <= ln2/2 and t = expm1(r) - r, both as doubles."""
    x = m.clamp(x, -1100.0, 1100.0)
    n, n_int = m.nearest_int(x, _LOG2E)
    hi = m.fma(m.neg(n), _LN2[0], x)                # exact: n * ln2 is within ln2/2 of x
    lo = m.mul(n, _LN2[1])
    if x_lo is None:
        r = m.sub(hi, lo)
        c = m.sub(m.sub(hi, r), lo)                 # the rounding error of r, fed back below
    else:
        r, c = m.two_sum(hi, m.sub(x_lo, lo))
    # expm1(r + c) - r ~ r^2 (1/2 + r P(r)) + c (1 + r)
    t = m.fma(m.mul(r, r), m.fma(r, m.poly(r, m.pick(_EXPM1)), 0.5), m.fma(c, r, c))
    return n, n_int, r, t


def _exp_pair(m, r, t):
    """1 + r + t as a normalised pair hi + lo (|lo| <= ulp(hi)/2)."""
    hi, lo = m.fast_two_sum(1.0, r)
    return m.fast_two_sum(hi, m.add(lo, t))


def _exp(m, x):
    _, n, r, t = _exp_parts(m, x)
    return m.ldexp(m.add(1.0, m.add(r, t)), n)


def _expm1(m, x):
    n_f, n, r, t = _exp_parts(m, x)
    # (2^n - 1) + 2^n (r + t) with exact sums: near x = ln2/2 they cancel to a few bits.
    scale = m.pow2(m.iselect(m.icmp("<", n, -60), -60, m.iselect(m.icmp(">", n, 1023), 1023, n)))
    sm1, sm1_err = m.two_sum(scale, -1.0)
    u, u_err = m.two_sum(sm1, m.mul(scale, r))
    value = m.add(u, m.add(m.add(u_err, sm1_err), m.mul(scale, t)))
    huge = m.ldexp(m.add(1.0, m.add(r, t)), n)      # n > 1023: the -1 is far below an ulp
    value = m.select(m.cmp(">", n_f, 1023.0), huge, value)
    return m.select(m.cmp("<", m.fabs(x), 2.0 ** -54), x, value)     # keeps -0 and subnormals


def _tanh(m, x):
    a = m.fabs(x)
    t = m.mul(a, a)
    small = m.fma(m.mul(a, t), m.poly(t, m.pick(_TANH)), a)
    # tanh a = 1 - 2/(e^2a + 1), carrying every rounding error to the final subtraction.
    _, n, r, t = _exp_parts(m, m.mul(m.clamp(a, 0.0, 40.0), 2.0))
    f_hi, f_lo = _exp_pair(m, r, t)
    scale = m.pow2(n)
    d, d_err = m.fast_two_sum(m.mul(scale, f_hi), 1.0)
    d_err = m.add(d_err, m.mul(scale, f_lo))
    q = m.div(2.0, d)
    correction = m.mul(m.sub(m.fma(m.neg(q), d, 2.0), m.mul(q, d_err)), m.mul(q, 0.5))  # / d
    r1, r1_err = m.fast_two_sum(1.0, m.neg(q))
    big = m.add(r1, m.sub(r1_err, correction))
    return m.copysign(m.select(m.cmp("<", a, 0.55), small, big), x)


def _sigmoid(m, x):
    a = m.fabs(x)
    _, n, r, t = _exp_parts(m, m.neg(a))
    f_hi, f_lo = _exp_pair(m, r, t)
    e_hi, e_lo = m.ldexp(f_hi, n), m.ldexp(f_lo, n)         # e^-|x| <= 1
    d, d_err = m.fast_two_sum(1.0, e_hi)
    d_err = m.add(d_err, e_lo)
    q = m.div(1.0, d)
    q_lo = m.mul(q, m.sub(m.fma(m.neg(q), d, 1.0), m.mul(q, d_err)))   # q + q_lo = 1/(1 + e^-|x|)
    negative = m.fma(e_hi, q, m.fma(e_hi, q_lo, m.mul(e_lo, q)))      # e^-|x| / (1 + e^-|x|)
    return m.select(m.cmp("<", x, 0.0), negative, m.add(q, q_lo))


def _sinh_cosh(m, a, sign):
    """2^(n-1) (f + sign 2^-2n / f) = (e^a + sign e^-a)/2 for a >= 0, as one double."""
    _, n, r, t = _exp_parts(m, a)
    f_hi, f_lo = _exp_pair(m, r, t)
    q = m.div(1.0, f_hi)
    residual = m.sub(m.fma(m.neg(q), f_hi, 1.0), m.mul(q, f_lo))
    # beyond n = 40 the e^-a term is below 2^-80 of the result: clamp keeps 2^-2n representable
    scale = m.pow2(m.isub(0, m.shl(m.iselect(m.icmp(">", n, 40), 40, n), 1)))
    y_hi = m.mul(m.mul(q, scale), sign)
    y_lo = m.mul(m.mul(m.mul(q, residual), scale), sign)
    g, g_err = m.two_sum(f_hi, y_hi)
    return m.ldexp(m.add(g, m.add(m.add(g_err, f_lo), y_lo)), m.isub(n, 1))


def _sinh(m, x):
    a = m.fabs(x)
    t = m.mul(a, a)
    small = m.fma(m.mul(a, t), m.poly(t, m.pick(_SINH)), a)
    return m.copysign(m.select(m.cmp("<", a, 1.0), small, _sinh_cosh(m, a, -1.0)), x)


def _cosh(m, x):
    return _sinh_cosh(m, m.fabs(x), 1.0)


# ---------------------------------------------------------------- log family

def _log_reduce(m, x):
    """x = 2^k (1 + f) with 1 + f in [sqrt(2)/2, sqrt(2)); returns k (double) and f (exact)."""
    tiny = m.cmp("<", x, 2.0 ** -1022)
    x = m.select(tiny, m.mul(x, 2.0 ** 54), x)               # subnormals: normalise first
    u = m.iadd(m.bits(x), 0x3FF0000000000000 - 0x3FE6A09E00000000)
    k = m.isub(m.ashr(u, 52), 1023)
    mantissa = m.from_bits(m.iadd(m.iand(u, 0x000FFFFFFFFFFFFF), 0x3FE6A09E00000000))
    return m.sub(m.int_to_float(k), m.select(tiny, 54.0, 0.0)), m.sub(mantissa, 1.0)


def _log_core(m, u, c):
    """log(u) + c for finite u > 0 and small c (fdlibm's arrangement, < 1 ulp)."""
    k, f = _log_reduce(m, u)
    hfsq = m.mul(m.mul(f, f), 0.5)
    s = m.div(f, m.add(f, 2.0))
    z = m.mul(s, s)
    r = m.mul(z, m.poly(z, m.pick(_LOG)))
    inner = m.fma(s, m.add(hfsq, r), m.fma(k, _LN2_FDLIBM[1], c))
    return m.fma(k, _LN2_FDLIBM[0], m.neg(m.sub(m.sub(hfsq, inner), f)))


def _log_specials(m, x, value):
    value = m.select(m.cmp("==", x, _INF), _INF, value)
    value = m.select(m.cmp("==", x, 0.0), -_INF, value)
    value = m.select(m.cmp("<", x, 0.0), math.nan, value)
    return m.select(m.isnan(x), x, value)


def _log(m, x):
    return _log_specials(m, x, _log_core(m, x, 0.0))


def _log1p(m, x):
    u = m.add(x, 1.0)
    big = m.cmp(">", m.fabs(x), 1.0)
    error = m.select(big, m.add(m.sub(x, u), 1.0), m.add(m.sub(1.0, u), x))  # (1 + x) - u, exactly
    value = _log_specials(m, u, _log_core(m, u, m.div(error, u)))
    value = m.select(m.isnan(x), x, value)
    return m.select(m.cmp("==", x, 0.0), x, value)


def _arcsinh(m, x):
    """asinh |x| = log1p(u), u = |x| + x^2/(1 + sqrt(1 + x^2)): 1 + u = |x| + sqrt(1 + x^2) is carried as
    a pair, its low part fed to the log as log1p's rounding error is."""
    a = m.fabs(x)
    p, p_err = m.two_prod(a, a)
    t, t_err = m.two_sum(1.0, p)
    t_err = m.add(t_err, p_err)                              # t + t_err = 1 + x^2
    s = m.sqrt(t)
    s_lo = m.div(m.add(m.fma(m.neg(s), s, t), t_err), m.add(s, s))   # s + s_lo = sqrt(1 + x^2)
    v, v_err = m.fast_two_sum(s, a)                         # s > a
    v_err = m.add(v_err, s_lo)                               # v + v_err = 1 + u
    value = _log_core(m, v, m.div(v_err, v))
    # beyond 2^28 sqrt(1 + x^2) is |x| to 2^-57 (and x^2 overflows from 2^512): log 2|x| = log |x| + log 2
    value = m.select(m.cmp("<", a, 2.0 ** 28), value, _log_core(m, a, _LN2[0]))
    value = m.select(m.cmp("==", a, _INF), _INF, value)
    # asinh a = a (1 - a^2/6 + ...) rounds to a below 2^-28 (keeps subnormals exact)
    value = m.select(m.cmp("<", a, 2.0 ** -28), a, value)
    return m.copysign(m.select(m.isnan(x), x, value), x)


def _log_double_double(m, x):
    """log(x) = hi + lo to about 2^-66 relative, for pow."""
    k, f = _log_reduce(m, x)
    d_hi = m.add(f, 2.0)
    d_lo = m.sub(f, m.sub(d_hi, 2.0))
    s = m.div(f, d_hi)
    s_lo = m.div(m.sub(m.fma(m.neg(s), d_hi, f), m.mul(s, d_lo)), d_hi)     # s + s_lo = f/(2 + f)
    z, z_err = m.two_prod(s, s)
    cube, cube_err = m.two_prod(s, z)
    cube_err = m.fma(s, z_err, cube_err)
    b, b_err = m.two_prod(_TWO_THIRDS[0], cube)                             # 2s^3/3
    b_err = m.add(b_err, m.fma(_TWO_THIRDS[0], cube_err, m.mul(_TWO_THIRDS[1], cube)))
    b_err = m.fma(m.mul(z, 2.0), s_lo, b_err)
    tail = m.mul(m.mul(cube, z), m.poly(z, _LOG_TAIL))                      # s^5 Q(s^2)
    h, h_err = m.fast_two_sum(m.mul(s, 2.0), b)
    lo = m.add(h_err, m.add(m.mul(s_lo, 2.0), m.add(b_err, tail)))
    g, g_err = m.two_sum(m.mul(k, _LN2_42[0]), h)
    hi, lo = m.fast_two_sum(g, m.add(g_err, m.fma(k, _LN2_42[1], lo)))
    return _log_specials(m, x, hi), lo


# ---------------------------------------------------------------- trigonometric

def _payne_hanek_rows():
    """Per 8 binades from 2^28: 2/pi without the bits that only add multiples of 4, in four 53-bit parts."""
    rows = []
    for row in range(_PH_ROWS):
        low = _PH_MIN_EXPONENT + _PH_BUCKET * row
        scale = 192 if row >= _PH_SCALED_ROW else 0
        for part in range(4):
            # part p holds the bits of weight [2^(1 - low - 53p), 2^(54 - low - 53p)); 2/pi = BITS * 2^-1400
            shift = 1401 - low - 53 * part
            chunk = (_TWO_OVER_PI_BITS >> shift) & ((1 << 53) - 1)
            rows.append(math.ldexp(chunk, shift - 1400 + scale))
    return rows


def _payne_hanek_table(module):
    name = "symbackprop.two_over_pi"
    if name not in module.globals:
        values = _payne_hanek_rows()
        table = ir.GlobalVariable(module, ir.ArrayType(_DOUBLE, len(values)), name)
        table.initializer = ir.Constant(ir.ArrayType(_DOUBLE, len(values)), values)
        table.global_constant = True
        table.linkage = "private"
    return module.globals[name]


def _payne_hanek(m, x):
    """x = n pi/2 + r for huge |x|: x times the relevant window of 2/pi bits, integer parts dropped."""
    exponent = m.isub(m.iand(m.lshr(m.bits(x), 52), 0x7FF), 1023)
    row = m.ashr(m.isub(exponent, _PH_MIN_EXPONENT), 3)
    row = m.iselect(m.icmp("<", row, 0), 0, m.iselect(m.icmp(">", row, _PH_ROWS - 1), _PH_ROWS - 1, row))
    x = m.mul(x, m.select(m.icmp(">=", row, _PH_SCALED_ROW), 2.0 ** -192, 1.0))
    table = _payne_hanek_table(m.b.module)
    base = m.shl(row, 2)
    t0, t1, t2, t3 = (m.lookup(table, m.iadd(base, part)) for part in range(4))
    hi0, lo0 = m.two_prod(x, t0)
    a0 = m.sub(hi0, m.mul(m.rint(m.mul(hi0, 0.25)), 4.0))       # drop multiples of 4 quadrants
    hi1, lo1 = m.two_prod(x, t1)
    hi2, lo2 = m.two_prod(x, t2)
    u, u_err = m.two_sum(a0, lo0)
    u, u_err2 = m.two_sum(u, hi1)
    n1 = m.rint(u)
    u = m.sub(u, n1)
    w = m.add(m.add(m.add(u_err, u_err2), m.add(lo1, hi2)), m.fma(x, t3, lo2))
    f_hi, f_lo = m.two_sum(u, w)
    n2 = m.rint(f_hi)
    f_hi, f_lo = m.fast_two_sum(m.sub(f_hi, n2), f_lo)
    _, n = m.nearest_int(m.add(n1, n2), 1.0)
    r_hi = m.mul(f_hi, _PIO2[0])
    r_lo = m.add(m.fma(f_hi, _PIO2[0], m.neg(r_hi)), m.fma(f_lo, _PIO2[0], m.mul(f_hi, _PIO2[1])))
    return r_hi, r_lo, n


def _two_over_pi_parts(count):
    """2/pi as a sum of `count` doubles of 53 bits each."""
    return [math.ldexp((_TWO_OVER_PI_BITS >> (1400 - 53 * (k + 1))) & ((1 << 53) - 1), -53 * (k + 1))
            for k in range(count)]


def _reduce_pio2_float32(m, x):
    """Payne-Hanek with fixed parts of 2/pi: every |x| < 2^128 (all float32), no table lookups."""
    parts = _two_over_pi_parts(4)
    terms = []
    for part in parts[:3]:
        terms.extend(m.two_prod(x, part))
    terms = [m.sub(v, m.mul(m.rint(m.mul(v, 0.25)), 4.0)) for v in terms[:5]] + [terms[5], m.mul(x, parts[3])]
    s, error = m.two_sum(terms[0], terms[1])        # each term now in [-2, 2] quadrants, or tiny
    for term in terms[2:]:
        s, e = m.two_sum(s, term)
        error = m.add(error, e)
    n1 = m.rint(s)
    f_hi, f_lo = m.two_sum(m.sub(s, n1), error)
    n2 = m.rint(f_hi)
    f_hi, f_lo = m.fast_two_sum(m.sub(f_hi, n2), f_lo)
    _, n = m.nearest_int(m.add(n1, n2), 1.0)
    r_hi = m.mul(f_hi, _PIO2[0])
    r_lo = m.add(m.fma(f_hi, _PIO2[0], m.neg(r_hi)), m.fma(f_lo, _PIO2[0], m.mul(f_hi, _PIO2[1])))
    return r_hi, r_lo, n


def _reduce_pio2(m, x, wide_range):
    """x = n pi/2 + (r_hi + r_lo), |r| <= pi/4; returns r_hi, r_lo and n as an integer.

    Three-part Cody-Waite below 2^28, Payne-Hanek above; without `wide_range` r is NaN there.
    """
    n_f, n = m.nearest_int(x, _TWO_OVER_PI)
    t = m.fma(m.neg(n_f), _PIO2[0], x)                  # exact below 2^28
    p, p_err = m.two_prod(n_f, _PIO2[1])
    s, e = m.two_sum(t, m.neg(p))
    r_hi, r_lo = m.fast_two_sum(s, m.fma(m.neg(n_f), _PIO2[2], m.sub(e, p_err)))
    huge = m.cmp(">=", m.fabs(x), 2.0 ** _PH_MIN_EXPONENT)
    if not wide_range:
        return m.select(huge, math.nan, r_hi), r_lo, n
    # the vectorised loop evaluates both paths: this costs about as much as the rest of sin
    big_hi, big_lo, big_n = (_reduce_pio2_float32 if m.single else _payne_hanek)(m, x)
    return m.select(huge, big_hi, r_hi), m.select(huge, big_lo, r_lo), m.iselect(huge, big_n, n)


def _sin_cos_kernels(m, r_hi, r_lo):
    """sin and cos of r_hi + r_lo (|r| <= pi/4), each as an unevaluated sum hi + lo."""
    t, t_err = m.two_prod(r_hi, r_hi)
    sin_lo = m.fma(m.mul(r_hi, t), m.poly(t, m.pick(_SIN)), m.mul(r_lo, m.fma(t, -0.5, 1.0)))
    half = m.mul(t, 0.5)
    w, w_err = m.fast_two_sum(1.0, m.neg(half))
    cos_lo = m.add(w_err, m.sub(m.fma(m.mul(t, t), m.poly(t, m.pick(_COS)), m.neg(m.mul(r_hi, r_lo))),
                                m.mul(t_err, 0.5)))
    return (r_hi, sin_lo), (w, cos_lo)


def _quadrant_bit(m, n, bit):
    return m.icmp("!=", m.iand(n, bit), 0)


def _sin(m, x, wide_range=True):
    r_hi, r_lo, n = _reduce_pio2(m, x, wide_range)
    (s_hi, s_lo), (c_hi, c_lo) = _sin_cos_kernels(m, r_hi, r_lo)
    value = m.select(_quadrant_bit(m, n, 1), m.add(c_hi, c_lo), m.add(s_hi, s_lo))
    value = m.select(_quadrant_bit(m, n, 2), m.neg(value), value)
    return m.select(m.cmp("==", x, 0.0), x, value)


def _cos(m, x, wide_range=True):
    r_hi, r_lo, n = _reduce_pio2(m, x, wide_range)
    (s_hi, s_lo), (c_hi, c_lo) = _sin_cos_kernels(m, r_hi, r_lo)
    value = m.select(_quadrant_bit(m, n, 1), m.add(s_hi, s_lo), m.add(c_hi, c_lo))
    return m.select(_quadrant_bit(m, m.iadd(n, 1), 2), m.neg(value), value)


def _tan(m, x, wide_range=True):
    r_hi, r_lo, n = _reduce_pio2(m, x, wide_range)
    (s_hi, s_lo), (c_hi, c_lo) = _sin_cos_kernels(m, r_hi, r_lo)
    odd = _quadrant_bit(m, n, 1)
    num_hi, num_lo = m.select(odd, c_hi, s_hi), m.select(odd, c_lo, s_lo)
    den_hi, den_lo = m.select(odd, s_hi, c_hi), m.select(odd, s_lo, c_lo)
    den = m.add(den_hi, den_lo)
    q = m.div(m.add(num_hi, num_lo), den)
    residual = m.add(m.fma(m.neg(q), den_hi, num_hi), m.sub(num_lo, m.mul(q, den_lo)))
    value = m.add(q, m.div(residual, den))
    value = m.select(odd, m.neg(value), value)          # tan(r + pi/2) = -cos r / sin r
    return m.select(m.cmp("==", x, 0.0), x, value)


def _arctan(m, x):
    a = m.fabs(x)
    below = [m.cmp("<", a, bound) for bound in (0.4375, 0.6875, 1.1875, 2.4375)]

    def by_interval(*choices):                          # fdlibm's five intervals, as selects
        value = choices[4]
        for cond, choice in reversed(list(zip(below, choices[:4]))):
            value = m.select(cond, choice, value)
        return value

    # atan a = atan c + atan t with t = (a - c)/(1 + c a), c in {0, 1/2, 1, 3/2, inf}
    num = by_interval(a, m.fma(a, 2.0, -1.0), m.sub(a, 1.0), m.sub(a, 1.5), -1.0)
    den = by_interval(1.0, m.add(a, 2.0), m.add(a, 1.0), m.fma(a, 1.5, 1.0), a)
    t = m.div(num, den)
    base_hi = by_interval(*(hi for hi, _ in _ATAN_BASE))
    base_lo = by_interval(*(lo for _, lo in _ATAN_BASE))
    z = m.mul(t, t)
    value = m.add(base_hi, m.add(t, m.fma(m.mul(t, z), m.poly(z, m.pick(_ATAN)), base_lo)))
    return m.copysign(value, x)


def _asin_of_half_complement(m, a):
    """asin(s) = s + tail, s = sqrt((1 - a)/2): the reduction for |x| >= 1/2."""
    z = m.mul(m.sub(1.0, a), 0.5)                       # exact for a in [1/2, 1]
    s = m.sqrt(z)
    s_lo = m.select(m.cmp(">", s, 0.0), m.div(m.fma(m.neg(s), s, z), m.add(s, s)), 0.0)
    return s, m.fma(m.mul(s, z), m.poly(z, m.pick(_ASIN)), s_lo)


def _arcsin(m, x):
    a = m.fabs(x)
    t = m.mul(a, a)
    small = m.fma(m.mul(a, t), m.poly(t, m.pick(_ASIN)), a)
    s, tail = _asin_of_half_complement(m, a)
    h, h_err = m.two_sum(_PIO2[0], m.mul(s, -2.0))           # pi/2 - 2 asin s
    big = m.add(h, m.fma(tail, -2.0, m.add(h_err, _PIO2[1])))
    return m.copysign(m.select(m.cmp("<", a, 0.5), small, big), x)


def _arccos(m, x):
    a = m.fabs(x)
    t = m.mul(x, x)
    small = m.sub(_PIO2[0], m.add(x, m.fma(m.mul(x, t), m.poly(t, m.pick(_ASIN)), -_PIO2[1])))
    s, tail = _asin_of_half_complement(m, a)
    positive = m.mul(m.add(s, tail), 2.0)                    # 2 asin s
    h, h_err = m.two_sum(_PI[0], m.mul(s, -2.0))             # pi - 2 asin s
    negative = m.add(h, m.fma(tail, -2.0, m.add(h_err, _PI[1])))
    return m.select(m.cmp("<", a, 0.5), small, m.select(m.cmp(">", x, 0.0), positive, negative))


# ---------------------------------------------------------------- powers

def _pow(m, x, y):
    a = m.fabs(x)
    if m.single:
        z_hi, z_lo = m.mul(y, _log(m, a)), None             # double precision is ample for float32
    else:
        l_hi, l_lo = _log_double_double(m, a)
        z_hi = m.mul(y, l_hi)
        z_lo = m.fma(y, l_lo, m.fma(y, l_hi, m.neg(z_hi)))
        z_lo = m.select(m.cmp("<", m.fabs(z_hi), 1100.0), z_lo, 0.0)     # exp saturates beyond anyway
    _, n, r, t = _exp_parts(m, z_hi, z_lo)
    value = m.ldexp(m.add(1.0, m.add(r, t)), n)
    # C99 / NumPy special cases, last rule wins
    y_int = m.cmp("==", m.rint(y), y)
    half_y = m.mul(y, 0.5)
    y_odd = m.both(y_int, m.cmp("!=", m.rint(half_y), half_y))
    negative = m.icmp("<", m.bits(x), 0)
    value = m.select(m.both(negative, y_odd), m.neg(value), value)
    finite_negative = m.both(m.cmp("<", x, 0.0), m.cmp(">", x, -_INF))
    value = m.select(m.both(finite_negative, m.b.not_(y_int)), math.nan, value)
    value = m.select(m.both(m.cmp("==", a, 1.0), m.cmp("==", m.fabs(y), _INF)), 1.0, value)
    value = m.select(m.cmp("==", x, 1.0), 1.0, value)
    return m.select(m.cmp("==", y, 0.0), 1.0, value)


def _integer_power(m, x, exponent):
    """x**exponent by repeated squaring in double-double, then one rounding."""
    def times(a, b):                                    # (hi, lo) pairs, lo not renormalised
        p, e = m.two_prod(a[0], b[0])
        return p, m.add(e, m.fma(a[0], b[1], m.mul(a[1], b[0])))

    def power(base, k):
        result = None
        while k:
            if k & 1:
                result = base if result is None else times(result, base)
            k >>= 1
            if k:
                base = times(base, base)
        return result

    def finish(hi, lo):                                 # past overflow lo is NaN, at zero it would lose -0
        usable = m.both(m.cmp("<", m.fabs(hi), _INF), m.cmp("!=", hi, 0.0))
        return m.select(usable, m.add(hi, lo), hi)

    if exponent == 1:
        return x
    hi, lo = power((x, m.f(0.0)), abs(exponent))
    if exponent > 0:
        return finish(hi, lo)
    q = m.div(1.0, hi)
    value = m.fma(q, m.sub(m.fma(m.neg(q), hi, 1.0), m.mul(q, lo)), q)
    value = m.select(m.cmp("<", m.fabs(q), _INF), value, q)
    # x^k overflowed or went subnormal while x^-k may not: raise 1/x (as a pair) instead
    r = m.div(1.0, x)
    r_lo = m.select(m.cmp("<", m.fabs(r), _INF), m.mul(r, m.fma(m.neg(r), x, 1.0)), 0.0)
    inexact = m.either(m.cmp("==", m.fabs(hi), _INF), m.cmp("<", m.fabs(hi), 2.0 ** -960))
    return m.select(inexact, finish(*power((r, r_lo), abs(exponent))), value)


# ---------------------------------------------------------------- public functions

def _apply(builder, core, x, *rest):
    """Run `core` in float64 on x (and rest), converting float32 values in and out."""
    ty = x.type
    element = ty.element if isinstance(ty, ir.VectorType) else ty
    if isinstance(element, ir.DoubleType):
        return core(_Math(builder, ty, single=False), x, *rest)
    if not isinstance(element, ir.FloatType):
        raise TypeError(f"vecmath needs a float or double (vector) value, got {ty}")
    wide = ir.VectorType(_DOUBLE, ty.count) if isinstance(ty, ir.VectorType) else _DOUBLE
    args = [builder.fpext(v, wide) for v in (x, *rest)]
    return builder.fptrunc(core(_Math(builder, wide, single=True), *args), ty)


def exp(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _apply(builder, _exp, x)


def expm1(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _apply(builder, _expm1, x)


def log(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _apply(builder, _log, x)


def log1p(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _apply(builder, _log1p, x)


def tanh(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _apply(builder, _tanh, x)


def sigmoid(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """1 / (1 + exp(-x)), without overflow for large |x|."""
    return _apply(builder, _sigmoid, x)


def sinh(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _apply(builder, _sinh, x)


def cosh(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _apply(builder, _cosh, x)


def sin(builder: ir.IRBuilder, x: ir.Value, wide_range: bool = True) -> ir.Value:
    """wide_range=False: accurate for |x| < 2^28 only (NaN beyond), about 3x faster."""
    return _apply(builder, lambda m, v: _sin(m, v, wide_range), x)


def cos(builder: ir.IRBuilder, x: ir.Value, wide_range: bool = True) -> ir.Value:
    """wide_range=False: accurate for |x| < 2^28 only (NaN beyond), about 3x faster."""
    return _apply(builder, lambda m, v: _cos(m, v, wide_range), x)


def tan(builder: ir.IRBuilder, x: ir.Value, wide_range: bool = True) -> ir.Value:
    """wide_range=False: accurate for |x| < 2^28 only (NaN beyond), about 3x faster."""
    return _apply(builder, lambda m, v: _tan(m, v, wide_range), x)


def arctan(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _apply(builder, _arctan, x)


def arcsin(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _apply(builder, _arcsin, x)


def arccos(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _apply(builder, _arccos, x)


def arcsinh(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _apply(builder, _arcsinh, x)


def sqrt(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """llvm.sqrt: correctly rounded, vectorised by every x86-64 target."""
    ty = x.type
    element = ty.element if isinstance(ty, ir.VectorType) else ty
    suffix = {ir.DoubleType: "f64", ir.FloatType: "f32"}[type(element)]
    if isinstance(ty, ir.VectorType):
        suffix = f"v{ty.count}{suffix}"
    name = f"llvm.sqrt.{suffix}"
    function = builder.module.globals.get(name) or ir.Function(builder.module, ir.FunctionType(ty, [ty]), name)
    return builder.call(function, [x])


def pow(builder: ir.IRBuilder, x: ir.Value, y) -> ir.Value:
    """x**y with C99/NumPy special cases; y an ir.Value of x's type or a Python number.

    Integral constants |y| <= 64 multiply (in double-double); 0.5 is sqrt, as in NumPy's `x**0.5`.
    """
    if isinstance(y, ir.Value):
        return _apply(builder, _pow, x, y)
    element = x.type.element if isinstance(x.type, ir.VectorType) else x.type
    y = float(y) if isinstance(element, ir.DoubleType) else struct.unpack("f", struct.pack("f", y))[0]
    if y == 0.5:
        return sqrt(builder, x)
    if y == int(y) and abs(y) <= 64:
        if y == 0:
            return ir.Constant(x.type, 1.0 if not isinstance(x.type, ir.VectorType) else [1.0] * x.type.count)
        return _apply(builder, lambda m, v: _integer_power(m, v, int(y)), x)
    return _apply(builder, lambda m, v: _pow(m, v, m.f(y)), x)


def _llvm_intrinsic(builder: ir.IRBuilder, name: str, x: ir.Value) -> ir.Value:
    """`llvm.<name>` on a float or double, or a vector of them (the vectoriser knows these)."""
    ty = x.type
    element = ty.element if isinstance(ty, ir.VectorType) else ty
    suffix = "f64" if isinstance(element, ir.DoubleType) else "f32"
    if isinstance(ty, ir.VectorType):
        suffix = f"v{ty.count}{suffix}"
    full = f"llvm.{name}.{suffix}"
    module = builder.module
    fn = module.globals.get(full) or ir.Function(module, ir.FunctionType(ty, [ty]), full)
    return builder.call(fn, [x])


def rint(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """To the nearest integer, halves to even (the default rounding mode), as np.rint: exact."""
    return _llvm_intrinsic(builder, "rint", x)


def floor(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _llvm_intrinsic(builder, "floor", x)


def ceil(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _llvm_intrinsic(builder, "ceil", x)


def _implementations():
    """{name: function} for each implementation the table of scalar functions asks for (its `llvm`)."""
    found = {}
    for function in scalar.FUNCTIONS.values():
        if function.llvm is None:
            continue
        implementation = globals().get(function.llvm)
        if not callable(implementation):
            raise ImportError(f"vecmath has no `{function.llvm}` for the scalar function {function.name}")
        found[function.llvm] = implementation
    return found


UNARY = _implementations()
BINARY = {"pow": pow}


def elementwise_kernel(function: str, dtype: str = "float64", name: str = "kernel",
                       lanes: int | None = None, **options) -> str:
    """IR text of `void name(T* in, [T* in2,] T* out, i64 n)` applying `function` elementwise.

    `options` go to the function (pow's `exponent`, which makes the kernel unary; the trigonometric
    `wide_range`). With `lanes` the loop works on explicit <lanes x T> vectors (n a multiple of lanes).
    """
    scalar = {"float64": _DOUBLE, "float32": ir.FloatType()}[dtype]
    if function == "pow" and "exponent" in options:
        arity = 1
        apply = lambda builder, x: pow(builder, x, options["exponent"])     # noqa: E731
    else:
        arity = 1 if function in UNARY else 2
        target = UNARY.get(function) or BINARY[function]
        apply = lambda builder, *xs: target(builder, *xs, **options)        # noqa: E731
    value_type = scalar if lanes is None else ir.VectorType(scalar, lanes)
    module = ir.Module(name=f"{function}_{dtype}")
    pointer = ir.PointerType()
    kernel = ir.Function(module, ir.FunctionType(ir.VoidType(), [pointer] * (arity + 1) + [_I64]), name)
    for argument in kernel.args[:-1]:
        argument.add_attribute("noalias")
    n = kernel.args[-1]
    entry, loop, done = (kernel.append_basic_block(label) for label in ("entry", "loop", "done"))
    builder = ir.IRBuilder(entry)
    step = ir.Constant(_I64, lanes or 1)
    builder.cbranch(builder.icmp_signed(">", n, ir.Constant(_I64, 0)), loop, done)
    builder.position_at_end(loop)
    index = builder.phi(_I64)
    index.add_incoming(ir.Constant(_I64, 0), entry)
    align = 8 if dtype == "float64" else 4
    inputs = [builder.load(builder.gep(argument, [index], source_etype=scalar), typ=value_type, align=align)
              for argument in kernel.args[:arity]]
    result = apply(builder, *inputs)
    builder.store(result, builder.gep(kernel.args[arity], [index], source_etype=scalar), align=align)
    following = builder.add(index, step)
    index.add_incoming(following, builder.block)
    builder.cbranch(builder.icmp_signed("<", following, n), loop, done)
    builder.position_at_end(done)
    builder.ret_void()
    return str(module)
