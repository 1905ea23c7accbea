"""What the value-dependent `if`s and `while`s of a gradient did on given arguments, and what they keep.

explain and graph show each region of the forward pass (primitives/control.py) at its model line:
an `if` with the branch it took, a `while` with its trip count, on the arguments given, found by
running the NumPy forward pass once with probes (backends/numpy/probe.py); and what each loop's tape
stores for the backward pass, the residuals pushed per iteration with their bytes.

A region reached more than once (an `if` inside a loop) reports every time: "the `if` branch 3
times, the `else` branch 2 times"; a loop run several times (inside another loop) gives each trip
count. The `if`s the compiler makes for a `break` or `continue` on an array value (the rest of a
loop's body, run only if neither ran) are reported as such, under the line they guard.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .backends import get as get_backend
from .backends.numpy.probe import run_probed
from .ir import bodies
from .primitives.control import If, Tape, While

#: trip counts listed one by one up to this many runs; beyond it, their range and total
LISTED = 8


@dataclass
class Residual:
    """One value a loop's tape stores per iteration."""

    name: str         # as the generated code names it (`t4`, pushed onto `t4_tape`)
    tape: str
    type: str         # float64[2]
    bytes: int        # per iteration (0 for a tape of an inner loop: its own entries are counted there)
    line: str         # the model line computing it (`m.py:6`), "its value before the step" (a carried value), or ""


@dataclass
class Site:
    """One forward region, and what it did on the arguments (`seen`: a bool per time an `if` was reached,
    a trip count per time a loop ran)."""

    number: int
    node: object
    kind: str                      # "if", "while", or "guard" (the rest of a loop body after a break)
    loc: object
    outer: "Site | None"
    seen: list | None = None       # None: not run (explain without arguments)
    tape: list = field(default_factory=list)   # while: Residual per value pushed per iteration
    keeps: list = field(default_factory=list)  # if: the names of the branch's values the backward reads
    flags: tuple = ()                          # guard: the flags it tests ("break", "continue")
    copies: list = field(default_factory=list) # the nodes of the same region in later copies of a static for

    @property
    def line(self) -> str:
        return self.loc.short() if self.loc and self.loc.line else ""

    @property
    def source(self) -> str:
        return self.loc.text.strip() if self.loc and self.loc.text else ""

    @property
    def bytes_per_iteration(self) -> int:
        return sum(r.bytes for r in self.tape)

    @property
    def iterations(self) -> int:
        return sum(self.seen) if self.kind == "while" and self.seen else 0

    def outcome(self) -> str:
        """What it did, in words: "took the `else` branch", "ran 6 iterations"."""
        seen = self.seen
        if seen is None:
            return "(give explain arguments to see what it does on them)"
        if not seen:
            return "not reached on these arguments"
        if self.kind == "while":
            if len(seen) == 1:
                return f"ran {_times(seen[0], 'iteration')}"
            listed = ", ".join(map(str, seen)) if len(seen) <= LISTED else f"{min(seen)} to {max(seen)}"
            return f"ran {len(seen)} times: {listed} iterations ({sum(seen)} in all)"
        taken, skipped = seen.count(True), seen.count(False)
        if self.kind == "guard":
            after = " or ".join(f"`{f}`" for f in self.flags)
            if len(seen) == 1:
                return "ran" if taken else f"skipped: a {after} ran before it"
            why = f" (a {after} ran before it)" if skipped else ""
            return f"ran {_times(taken, 'time')}, skipped {_times(skipped, 'time')}{why}"
        names = ("the `if` branch", "the `else` branch")
        if len(seen) == 1:
            return f"took {names[0] if taken else names[1]} ({'true' if taken else 'false'})"
        return f"took {names[0]} {_times(taken, 'time')}, {names[1]} {_times(skipped, 'time')}"

    def stores(self) -> str:
        """What it keeps for the backward pass: a loop's tape per iteration, an `if`'s predicate and residuals."""
        if self.kind == "while":
            if not self.tape:
                return "tape: nothing per iteration (the backward pass reads no value of the body)"
            parts = [f"{r.name} {r.type} {_bytes_text(r.bytes)}" + (
                f" ({r.line})" if r.line.startswith("its") else f" (from {r.line})" if r.line else "")
                     if r.bytes else f"{r.name} (the tape of an inner loop, counted there)" for r in self.tape]
            total = f"{_bytes_text(self.bytes_per_iteration)} per iteration"
            if self.seen is not None:
                total += f", {_bytes_text(self.bytes_per_iteration * self.iterations)} on these arguments"
            return f"tape per iteration: {', '.join(parts)} = {total}"
        if self.kind == "if" and self.keeps:
            return f"keeps for the backward pass: its predicate and {', '.join(self.keeps)}"
        return ""


def _times(n, what) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _bytes_text(n) -> str:
    return f"{n} B" if n < 10 * 1024 else f"{n / 1024:.1f} KiB" if n < 10 * 1024 * 1024 else f"{n / 2**20:.1f} MiB"


def _type(v) -> str:
    return f"{np.dtype(v.dtype).name}[{','.join(map(str, v.shape))}]"


@dataclass
class Report:
    sites: list

    def of(self, node):
        """The site of a region node (or of one of its unrolled copies), or None."""
        return next((s for s in self.sites if s.node is node or node in s.copies), None)

    def inside(self, site) -> list:
        """The sites nested in `site`'s bodies, at any depth, in order."""
        found = []
        for s in self.sites:
            o = s.outer
            while o is not None and o is not site:
                o = o.outer
            if o is site:
                found.append(s)
        return found

    def lines(self) -> list:
        """The control-flow section of explain: a line per region, indented by its nesting."""
        if not self.sites:
            return []
        rows = []
        for s in self.sites:
            depth, o = 0, s.outer
            while o is not None:
                depth, o = depth + 1, o.outer
            what = s.source if s.kind != "guard" else f"(runs if no {' or '.join(s.flags)}) {s.source}"
            rows.append((s.line, "  " * depth + what, s.outcome(), s.stores()))
        width = [max(len(r[k]) for r in rows) for k in range(2)]
        out = ["control flow on these arguments (the forward pass run once; the backward pass replays it)"]
        for line, what, outcome, stores in rows:
            out.append(f"  {line.ljust(width[0])}  {what.ljust(width[1])}  {outcome}")
            if stores:
                out.append(f"  {' ' * width[0]}  {' ' * width[1]}  {stores}")
        return out


def results(node) -> list:
    """The values a forward `if` or `while` gives the rest of the model (not what it keeps for the backward
    pass: an `if`'s residuals, a loop's trip count and tapes)."""
    if node.prim is While:
        return node.outputs[:node.attrs["carried"]]
    return node.outputs[:len(node.outputs) - node.attrs.get("residuals", 0)]


def forward_sites(graph, forward_nodes) -> list:
    """A Site per region of the forward pass, outermost first, each before the regions in its bodies."""
    sites = []

    def walk(nodes, outer):
        for node in nodes:
            if node.prim not in (If, While):
                continue
            kind = "while" if node.prim is While else "guard" if node.attrs.get("guard") else "if"
            site = Site(len(sites), node, kind, node.loc, outer, flags=node.attrs.get("guard", ()))
            sites.append(site)
            for body in bodies(node):
                walk(body.nodes, site)

    walk([n for n in graph.nodes if n in forward_nodes], None)
    return sites


def merged(sites) -> list:
    """The sites with the copies a static `for` unrolls (the same kind at the same line, inside the same
    merged site) made one, their records joined in order; `copies` maps each kept site to its copies."""
    kept, into = [], {}
    for s in sites:
        outer = into.get(id(s.outer)) if s.outer is not None else None
        key = (s.kind, s.line, id(outer))
        first = next((k for k in kept if (k.kind, k.line, id(k.outer)) == key), None)
        if first is None:
            s.outer = outer
            kept.append(s)
            into[id(s)] = s
        else:
            first.seen = None if first.seen is None else first.seen + s.seen
            first.copies.append(s.node)
            into[id(s)] = first
    return kept


def run(program, arguments) -> Report:
    """The Report of `program` (a NumPy value_and_grad program) on its dynamic `arguments` (None: the
    regions and their tapes only, not run)."""
    sites = forward_sites(program.graph, program.forward_nodes)
    if not sites:
        return Report([])
    records, names = run_probed(program, {s.node: s.number for s in sites}, arguments)
    for s in sites:
        s.seen = records[s.number] if arguments is not None else None
        node = s.node
        if s.kind == "while":
            for source, tape in node.attrs.get("tapes", ()):
                name = names.get(source) or names.get(tape, "?")
                size = 0 if isinstance(source, Tape) else int(np.prod(source.shape, dtype=np.int64)) * np.dtype(
                    source.dtype).itemsize
                line = source.node.loc.short() if source.node is not None and source.node.loc and \
                    source.node.loc.line else ""
                if source in node.attrs["bodies"][1].params:  # pushed at the top of the body
                    line = "its value before the step"
                s.tape.append(Residual(name, names.get(tape, ""), _type(source), size, line))
        elif node.attrs.get("residuals"):
            kept = node.outputs[len(node.outputs) - node.attrs["residuals"]:]
            s.keeps = [names.get(v, "?") for v in kept]
    return Report(merged(sites))


def for_call(gradfn, args, kwargs) -> Report:
    """The Report of a sb.grad / sb.value_and_grad function on these arguments (its NumPy program, whatever
    its backend: the trip counts are the arguments', the tapes those of the same graph). With no arguments,
    its last specialisation's regions, not run."""
    s, flat = gradfn.specialiser, None
    if not args and not kwargs and gradfn._last is not None:
        program = gradfn._last
    else:
        s, flat = s.flat(s.arguments(args, kwargs))
        program = s.lookup(s.key(flat), flat)
    if program.backend.language != "python":  # the LLVM backend's program: the same graph, written in NumPy
        program = s.compile(program.specs, kind=program.kind, backend=get_backend("numpy"))
    return run(program, None if flat is None else [flat[i] for i in program.dynamic])
