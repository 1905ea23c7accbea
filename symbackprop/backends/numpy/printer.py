"""SymPy kernel bodies as NumPy (arrays) or math (Python floats) expressions."""
from __future__ import annotations

import sympy
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter

from ...dtypes import COMPUTE, is_half
from ...dtypes import text as dtype_text
from ...primitives import scalar
import numpy as np

from ...ir import Value
from ...primitives.elementwise import expand, operand_dtypes
from .context import current_writer

class NumpyPrinter(StrPrinter):
    """Prints with `np.` functions; symbols are renamed through `names`."""

    numpy_code = True  # np.inf, calls with out=; not the math printer's nor explain's

    def text(self, function):
        """How this printer names a function of the table in primitives.scalar."""
        return function.numpy

    def __init__(self, names, bools=frozenset()):
        super().__init__({"order": "none"})
        self.names = names
        self.bools = bools  # symbols holding boolean arrays

    def boolish(self, expr) -> bool:
        """A product of comparisons or boolean values (times a number: -(x > 0)/2): a boolean array in NumPy."""
        _, rest = expr.as_coeff_Mul()
        return all(isinstance(f, scalar.BOOL_FUNCTIONS) or f in self.bools for f in sympy.Mul.make_args(rest))

    def _print_Symbol(self, expr):
        return self.names.get(expr, expr.name)

    def _print_Float(self, expr):
        return repr(float(expr))

    def _print_Rational(self, expr):
        return f"{expr.p}/{expr.q}"

    def _print_Half(self, expr):
        return "0.5"

    def _print_Infinity(self, expr):
        return "np.inf" if self.numpy_code else "math.inf"

    def _print_NegativeInfinity(self, expr):
        return "-np.inf" if self.numpy_code else "-math.inf"

    def _print_NaN(self, expr):
        return "np.nan" if self.numpy_code else "math.nan"

    # Folding can leave atoms with no real float: zoo (1/0 or log(0) of an exact zero SymPy found,
    # whose sign it does not know) and I (sqrt(-1), log(-2)): NumPy's real functions give nan there.
    def _print_ComplexInfinity(self, expr):
        return self._print(sympy.nan)

    _print_ImaginaryUnit = _print_ComplexInfinity

    def _print_NumberSymbol(self, expr):  # pi, E, EulerGamma, Catalan, GoldenRatio, ...
        return repr(float(expr))

    def _print_Pow(self, expr, rational=False):
        base, e = expr.args
        if e == sympy.S.Half:
            return f"{self.text(scalar.FUNCTIONS['sqrt'])}({self._print(base)})"
        if e == -sympy.S.Half:
            return f"1/{self.text(scalar.FUNCTIONS['sqrt'])}({self._print(base)})"
        if e == -1:
            return f"1/{self.parenthesize(base, PRECEDENCE['Mul'], strict=True)}"
        if e.is_Integer and e < 0:
            return f"1/{self.parenthesize(base, PRECEDENCE['Pow'], strict=True)}**{-e}"
        return self.pow(base, e)

    def pow(self, base, e):
        b = self.parenthesize(base, PRECEDENCE["Pow"], strict=True)
        if e == 3 or e == 4:
            # NumPy squares fast but takes the general pow() path for x**3: multiply instead
            return f"({b}*{b}*{b})" if e == 3 else f"({b}**2)**2"
        return f"{b}**{self.parenthesize(e, PRECEDENCE['Pow'], strict=True)}"

    # NumPy has no unary minus and no subtraction for boolean arrays: keep a number in front of them
    def _print_Add(self, expr, order=None):
        terms = list(expr.args)
        if not any(self.boolish(t) or self.boolish(-t) for t in terms):
            return super()._print_Add(expr, order)
        first = next((t for t in terms if not (self.boolish(t) or self.boolish(-t))), None)
        # `-(a == b)/2` would negate a boolean array before dividing it: start from 0 instead
        text = "0" if first is None or first.could_extract_minus_sign() else ""
        for t in ([first] if first is not None else []) + [t for t in terms if t is not first]:
            if t.could_extract_minus_sign():
                text += (" - " if text else "-") + self.parenthesize(-t, PRECEDENCE["Add"])
            else:
                text += (" + " if text else "") + self.parenthesize(t, PRECEDENCE["Add"])
        return text

    def _print_Mul(self, expr):
        coeff, rest = expr.as_coeff_Mul()
        if coeff.is_negative and self.boolish(rest):
            return f"({self._print(coeff)})*{self.parenthesize(rest, PRECEDENCE['Mul'])}"
        return super()._print_Mul(expr)

    def _print_Function(self, expr):
        function = scalar.OF_CLASS.get(type(expr))
        if function is not None and function.infix:
            a, b = (self.parenthesize(x, PRECEDENCE["Add"] - 1 if function.infix in "&|" else PRECEDENCE["Add"])
                    for x in expr.args)
            return f"({a} {function.infix} {b})"
        if isinstance(expr, scalar.sigmoid):
            return self.sigmoid(expr.args[0])
        if isinstance(expr, scalar.softplus):
            return self.softplus(expr.args[0])
        if isinstance(expr, scalar.where):
            return self.where(*expr.args)
        text = self.text(function) if function is not None else None
        if text is not None:
            return f"{text}({', '.join(self._print(a) for a in expr.args)})"
        raise NotImplementedError(f"no NumPy text for {type(expr).__name__}")

    _print_sign = _print_Function
    _print_Abs = _print_Function
    _print_exp = _print_Function
    _print_log = _print_Function

    def softplus(self, x):
        u = self._print(x)
        maximum, log1p, exp, absolute = (self.text(scalar.FUNCTIONS[name])
                                         for name in ("maximum", "log1p", "exp", "absolute"))
        return f"({maximum}({u}, 0) + {log1p}({exp}(-{absolute}({u}))))"

    def sigmoid(self, x):
        return f"1/(1 + {self.text(scalar.FUNCTIONS['exp'])}({self._print(-x)}))"

    def where(self, c, a, b):
        return f"{self.text(scalar.FUNCTIONS['where'])}({self._print(c)}, {self._print(a)}, {self._print(b)})"


def _number_symbols(cls=sympy.core.numbers.NumberSymbol):
    for sub in cls.__subclasses__():
        yield sub
        yield from _number_symbols(sub)


# StrPrinter spells each constant by its name (`EulerGamma`): every one of them is its float here
for _constant in _number_symbols():
    setattr(NumpyPrinter, f"_print_{_constant.__name__}", NumpyPrinter._print_NumberSymbol)


class MathPrinter(NumpyPrinter):
    """Prints Python-float code with `math.`; comparisons stay Python bools."""

    numpy_code = False

    def text(self, function):
        return function.math

    def pow(self, base, e):
        if e.is_Integer and 0 < e <= 3:
            # a product, bracketed: the caller placed it where a power binds tighter (a/t**2)
            b = self.parenthesize(base, PRECEDENCE["Pow"], strict=True)
            return "(" + "*".join([b] * int(e)) + ")"
        if e.is_Integer:
            return super().pow(base, e)
        # float ** float gives a complex for a negative base; math.pow raises instead
        return f"{self.text(scalar.FUNCTIONS['power'])}({self._print(base)}, {self._print(e)})"

    def where(self, c, a, b):
        return f"({self._print(a)} if {self._print(c)} else {self._print(b)})"

    def _print_Function(self, expr):
        if isinstance(expr, scalar.Rounding):  # round and math.floor give ints; NumPy and the model, floats
            return f"float({self.text(scalar.OF_CLASS[type(expr)])}({self._print(expr.args[0])}))"
        if type(expr) in scalar.FUNCTIONS["sign"].classes:
            x = self._print(expr.args[0])
            return f"(({x} > 0) - ({x} < 0))"
        if isinstance(expr, scalar.logical_not):
            return f"(not {self._print(expr.args[0])})"
        if isinstance(expr, scalar.logical_and):
            return f"({self._print(expr.args[0])} and {self._print(expr.args[1])})"
        if isinstance(expr, scalar.logical_or):
            return f"({self._print(expr.args[0])} or {self._print(expr.args[1])})"
        return super()._print_Function(expr)

    _print_sign = _print_Function
    _print_Abs = _print_Function
    _print_exp = _print_Function
    _print_log = _print_Function


def float_literal(x) -> str:
    """A float as NumPy-code source: repr(inf) and repr(nan) are names no generated module defines."""
    x = float(x)
    if x != x:
        return "np.nan"
    if x in (float("inf"), float("-inf")):
        return "np.inf" if x > 0 else "-np.inf"
    return repr(x)


def _may_warn(expr) -> bool:
    for e in sympy.preorder_traversal(expr):
        if e.is_Pow and not (e.exp.is_Integer and e.exp > 0):
            return True
        if e is sympy.oo or e is sympy.S.NegativeInfinity:  # inf*0, inf - inf
            return True
        if isinstance(e, sympy.Function):
            function = scalar.OF_CLASS.get(type(e))
            if function is None or function.warns:
                return True
    return False


def numpy_dtype(expr, dtypes):
    """The dtype NumPy gives the printed `expr` (None for a Python number: a weak scalar)."""
    if expr.is_Symbol:
        return dtypes[int(expr.name[1:])]
    if expr.is_Number:
        return None
    if isinstance(expr, scalar.BOOL_FUNCTIONS):
        return np.dtype(bool)
    args = expr.args[1:] if isinstance(expr, scalar.where) else expr.args
    kinds = [numpy_dtype(a, dtypes) for a in args]
    strong = [d for d in kinds if d is not None]
    weak_float = any(a.is_Number and not a.is_Integer for a in args) or (expr.is_Pow and expr.exp.is_negative)
    if not strong and isinstance(expr, sympy.Function) and not (
            isinstance(expr, scalar.where) and numpy_dtype(expr.args[0], dtypes) is None):
        # np.log(2) is a float64 scalar and np.where(mask, 1, 0.5) a float64 array: NumPy's dtypes, not weak ones
        return np.dtype(np.int64) if isinstance(expr, scalar.where) and all(a.is_Integer for a in args) \
            else np.dtype(np.float64)
    if not strong:
        return None
    result = np.result_type(*strong)
    arithmetic = isinstance(expr, (sympy.Add, sympy.Mul, sympy.Pow))
    if result.kind in "biu" and (weak_float or not arithmetic):
        return np.dtype(np.float64)
    if result.kind == "b" and arithmetic and any(a.is_Number for a in args):
        return np.dtype(np.int64)
    return result


def kernel_may_warn(node) -> bool:
    """Whether NumPy could warn (overflow, log of 0, 0/0) evaluating this kernel."""
    return any(_may_warn(e) for e in expand(node.attrs["program"], node.attrs["outs"]))


def call_into(printer, expr, target):
    """`expr` as one NumPy call writing its result into `target` (`out=`), or None when it is not one call.

    Only forms whose call computes exactly what the printed expression does: a function of one
    argument, np.maximum/np.minimum, a product without division (`a*b`: np.multiply), a sum or
    difference of two terms.
    """
    function = scalar.OF_CLASS.get(type(expr)) if isinstance(expr, sympy.Function) else None
    if function is not None and function.out and printer.numpy_code:
        return f"{printer.text(function)}({', '.join(printer._print(a) for a in expr.args)}, out={target})"
    if expr.is_Mul and not printer.boolish(expr):
        factors = sympy.Mul.make_args(expr)
        coeff = expr.as_coeff_Mul()[0]
        if any(f.is_Pow and f.exp.is_negative for f in factors) or not coeff.is_Integer or len(factors) < 2:
            return None
        head = sympy.Mul(*factors[:-1], evaluate=False)  # as printed: 2*(x + y) is not distributed
        return f"np.multiply({printer._print(head)}, {printer._print(factors[-1])}, out={target})"
    if expr.is_Add and len(expr.args) == 2 and not any(printer.boolish(t) or printer.boolish(-t) for t in expr.args):
        first, second = expr.args
        if first.could_extract_minus_sign():
            return None
        if second.could_extract_minus_sign():
            return f"np.subtract({printer._print(first)}, {printer._print(-second)}, out={target})"
        return f"np.add({printer._print(first)}, {printer._print(second)}, out={target})"
    return None


def kernel_printer(node, names, printer_cls=None):
    """The printer for a kernel's body, knowing which of its symbols hold boolean arrays."""
    printer_cls = printer_cls or NumpyPrinter
    program = node.attrs["program"]
    dtypes = operand_dtypes(node.inputs)
    bools = {sympy.Symbol(f"a{i}", real=True) for i, d in enumerate(dtypes) if d is not None and d.kind == "b"}
    bools |= {t for t, e in zip([t for t, _ in program], expand(program, [t for t, _ in program]))
              if numpy_dtype(e, dtypes) == np.dtype(bool)}
    return printer_cls(names, frozenset(bools))


def kernel_writes_into(node, k) -> bool:
    """Whether kernel_into_lines can write the kernel's k-th output into a target with one call."""
    program, outs = node.attrs["program"], node.attrs["outs"]
    if outs[k] in dict(program) or widened_inputs(node):
        return False
    full = expand(program, outs)[k]
    if _numpy_result("", full, node.inputs, node.outputs[k]) != "":
        return False  # NumPy would give another dtype or shape
    return call_into(kernel_printer(node, {}), outs[k], "out") is not None


def kernel_into_lines(node, args, k, target):
    """A kernel's statements with its k-th output written into `target` (see kernel_writes_into)."""
    return kernel_lines(node, args, None, NumpyPrinter, into=(k, target))


def kernel_lines(node, args, out, printer_cls=None, namer=None, into=None):
    """Assignments computing a kernel's outputs: temps first, then each output (`into`: see kernel_into_lines)."""
    writer = current_writer()
    printer_cls = printer_cls or writer.printer_cls
    names = {sympy.Symbol(f"a{i}", real=True): a for i, a in enumerate(args)}
    widened = widened_inputs(node) if printer_cls is not MathPrinter else {}
    for i, dtype in widened.items():
        a = args[i]
        names[sympy.Symbol(f"a{i}", real=True)] = f"{a if a.isidentifier() else f'({a})'}.astype({dtype_text(dtype)})"
    program, outs = node.attrs["program"], node.attrs["outs"]
    # an output that is just a temp gives the temp its name; outputs are named in order of computation
    temp_out = {}
    full = expand(program, outs)
    for k, o in enumerate(outs):
        # not when the temp lacks the output's shape or dtype (a residual of the 0-d inputs only: s/2)
        if o.is_Symbol and o in dict(program) and o not in temp_out and (
                printer_cls is MathPrinter or _numpy_result("", full[k], node.inputs, node.outputs[k], widened) == ""):
            temp_out[o] = k
    out = list(out) if out is not None else [None] * len(outs)

    def out_name(k):
        if out[k] is None:
            out[k] = writer.name(node.outputs[k])
        return out[k]

    user_names = {}
    if node.attrs["names"]:
        expanded = dict(zip([t for t, _ in program], expand(program, [t for t, _ in program])))
        wanted = {e: n for n, e in node.attrs["names"]}
        user_names = {t: wanted[e] for t, e in expanded.items() if e in wanted}
    lines = []
    printer = kernel_printer(node, names, printer_cls)
    for t, e in program:
        names[t] = out_name(temp_out[t]) if t in temp_out else writer.fresh(user_names.get(t, "t"))
        lines.append(f"{names[t]} = {printer.doprint(e)}")
    for k, o in enumerate(outs):
        if temp_out.get(o) == k:
            continue
        if into is not None and into[0] == k:
            lines.append(f"{out_name(k)} = {call_into(printer, o, into[1])}")
            continue
        text = printer.doprint(o)
        value = node.outputs[k]
        if printer_cls is not MathPrinter:
            text = _numpy_result(text, expand(program, [o])[0], node.inputs, value, widened)
        lines.append(f"{out_name(k)} = {text}")
    return lines



def widened_inputs(node) -> dict:
    """{input index: dtype} for float inputs to widen before computing: a NumPy scalar in the body
    (x32*np.float64(2)) gave the kernel a wider dtype than its arrays. NumPy computes in the wider
    type from where they meet; this computes the whole body in it, as the LLVM backend does."""
    halves = {i: COMPUTE for i, v in enumerate(node.inputs) if not v.weak and is_half(v.dtype)}
    if halves:  # float16/bfloat16 arrays are computed in float32 (symbackprop/dtypes.py)
        return halves
    want = node.attrs.get("dtype")
    if want is None or want.kind != "f":
        return {}
    dtypes = operand_dtypes(node.inputs)
    narrower = [numpy_dtype(e, dtypes) for e in expand(node.attrs["program"], node.attrs["outs"])]
    if not any(d is not None and d.kind == "f" and d.itemsize < want.itemsize for d in narrower):
        return {}
    return {i: want for i, v in enumerate(node.inputs)
            if not v.weak and v.dtype.kind == "f" and v.dtype.itemsize < want.itemsize}


def _primary(text) -> bool:
    """Whether `text` needs no brackets before `.astype`: a name, or one call (np.tanh(a + b))."""
    if text.isidentifier():
        return True
    head, paren, _ = text.partition("(")
    if not paren or not all(part.isidentifier() for part in head.split(".")) or not text.endswith(")"):
        return False
    depth = 0
    for k, c in enumerate(text[len(head):], len(head)):
        depth += c == "("
        depth -= c == ")"
        if depth == 0 and k < len(text) - 1:
            return False  # np.exp(a)*np.exp(b): the first call closes before the end
    return True


def _numpy_result(text, expr, inputs, value: Value, widened=None):
    """Make the printed expression have the declared dtype and shape."""
    dtypes = operand_dtypes(inputs)
    for i, d in (widened or {}).items():
        dtypes[i] = d
    natural = numpy_dtype(expr, dtypes)
    used = [inputs[int(s.name[1:])].shape for s in expr.free_symbols if s.name.startswith("a")]
    shape = tuple(np.broadcast_shapes(*used)) if used else ()
    if shape != value.shape:
        return f"np.full({value.shape!r}, {text}, dtype={dtype_text(value.dtype)})"
    if natural is None:
        return f"{dtype_text(value.dtype)}({text})" if value.shape == () else text
    if natural != value.dtype:
        bare = _primary(text) if is_half(value.dtype) else text.isidentifier()  # (other models' code as it was)
        return f"{text if bare else f'({text})'}.astype({dtype_text(value.dtype)})"
    return text
