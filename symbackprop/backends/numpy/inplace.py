"""Updates written in place: `W1 -= lr*d_W1` instead of a new array.

An update kernel computes the new value of a target (a parameter or a state
buffer) from values that include the target's old value. When its body is
affine in the target, new = c*target + r with c and r free of it, the update is
`target *= c` then `target += r` (`-=` when r is a negation), which allocates
no array for the result; otherwise it is `target[...] = body`.
"""
from __future__ import annotations

import sympy

from ...primitives.elementwise import arg, expand
from ...transforms.update import writes_in_place  # noqa: F401  (the writer reads it from here)


def in_place_lines(writer, node, target):
    """Statements that overwrite `target` with the single output of kernel `node`."""
    (body,) = expand(node.attrs["program"], node.attrs["outs"])
    names = {arg(i): writer.arg(v) for i, v in enumerate(node.inputs)}
    printer = writer.printer_cls(names)
    name = writer.name(target)
    if target in node.inputs:
        symbol = arg(node.inputs.index(target))
        scale = sympy.diff(body, symbol)
        rest = body.xreplace({symbol: 0})
        if symbol not in scale.free_symbols and not rest.has(sympy.zoo, sympy.nan):
            if scale == 0:
                return [f"{name}[...] = {printer.doprint(rest)}"]
            lines = [] if scale == 1 else [f"{name} *= {printer.doprint(scale)}"]
            if rest != 0 or not lines:  # never empty: an update that changes nothing is at worst `+= 0`
                negative = rest.could_extract_minus_sign()
                lines.append(f"{name} {'-=' if negative else '+='} {printer.doprint(-rest if negative else rest)}")
            return lines
    return [f"{name}[...] = {printer.doprint(body)}"]
