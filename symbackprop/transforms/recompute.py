"""Gradient checkpointing under a memory budget, and the memory accounting it is chosen by.

A residual is a forward value the backward pass reads: it stays alive from the
forward pass until its last backward use. Under `memory_budget=` some residuals
are dropped and the backward pass computes them again, from the residuals kept
(the checkpoints) and the inputs, just before it first needs them; a recomputed
value dies at its last use, as a kept one does.

The budget bounds the residual bytes alive at any point of the backward pass
(kept ones and recomputed ones together). The schedule tried first drops only
residuals whose recomputation is cheap (elementwise work, no matrix product);
then checkpoints are placed along the forward order at about every sqrt(n)-th
residual and tried over a range of segment sizes: the schedule with the fewest
recomputed flops under the budget wins. The op-cost model is each primitive's
`flops` and `view` (primitives/registry.py).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..errors import CompileError
from ..ir import Node, Value
from ..primitives.elementwise import Kernel
from ..primitives.index import ScatterAdd

_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
_BUDGET = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]i?)?(b)?\s*$", re.IGNORECASE)


def parse_budget(budget) -> int | None:
    """`memory_budget=` as bytes: an int, or a string such as "64MB", "1.5GiB", "512kB" (SI and IEC units)."""
    if budget is None:
        return None
    if isinstance(budget, bool):
        raise TypeError(f"memory_budget is a number of bytes or a string such as '64MB', got {budget!r}")
    if isinstance(budget, int):
        if budget <= 0:
            raise ValueError(f"memory_budget must be a positive number of bytes, got {budget}")
        return budget
    if isinstance(budget, float):
        if not math.isfinite(budget) or budget <= 0 or budget != int(budget):
            raise ValueError(f"memory_budget must be a positive whole number of bytes, got {budget!r}")
        return int(budget)
    if isinstance(budget, str):
        m = _BUDGET.match(budget)
        if m is None or (m.group(2) is None and m.group(3) is None and "." in m.group(1)):
            raise ValueError(f"memory_budget {budget!r} is not a size: write bytes as an int or a string such "
                             "as '64MB', '1.5GiB' (units B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)")
        unit = (m.group(2) or "").lower()
        size = float(m.group(1)) * _UNITS[unit]
        if size < 1:
            raise ValueError(f"memory_budget {budget!r} is less than one byte")
        return int(size)
    raise TypeError(f"memory_budget is a number of bytes or a string such as '64MB', got {type(budget).__name__}")


def format_bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def nbytes(v: Value) -> int:
    """The memory a value of its own takes (a view takes none)."""
    if v.node is not None and v.node.prim.view:
        return 0
    return v.size * v.dtype.itemsize


def root(v: Value) -> Value:
    """The value whose memory `v` reads (itself, unless it is a view)."""
    while v.node is not None and v.node.prim.view:
        v = v.node.inputs[0]
    return v


# ---- the schedule ---------------------------------------------------------------------------

@dataclass
class Block:
    """Forward nodes recomputed together in the backward pass, before `before` (a backward node)."""
    before: Node
    nodes: list                      # clones, in forward order
    from_values: list                # the kept values (and inputs) they are computed from


@dataclass
class Schedule:
    kept: set
    dropped: list                    # residuals recomputed, in forward order
    backward: list                   # the new backward nodes, clones included
    blocks: list
    clones: dict                     # clone node -> the forward node it repeats
    residual_peak: int               # residual bytes alive at most, over the backward pass
    extra_flops: int
    hold: bool = True                # each segment recomputed once (else: once per value read)
    residuals: list = field(default_factory=list)   # every residual, kept or not, in forward order


def _ordered_residuals(forward, backward):
    """Forward values (the memory they read, not their views) that backward nodes read, in forward order."""
    fwd = set(forward)
    read = {root(v) for n in backward for v in n.inputs}
    return [v for n in forward for v in n.outputs if v in read and v.node in fwd]


def _binomial_cost(steps, slots, memo={}) -> int:  # noqa: B006 (a cache shared by every call)
    """Forward steps to go back over a chain of `steps` values from a checkpoint before its first, holding
    at most `slots` values besides it: the first held value placed at the best offset m, the chain after it
    gone over with one slot fewer, then the chain before it with all (Griewank's binomial recurrence)."""
    if steps <= 1:
        return steps
    if slots == 0:
        return steps * (steps + 1) // 2  # every value recomputed from the checkpoint for its reader
    key = (steps, slots)
    if key not in memo:
        memo[key] = min(m + _binomial_cost(steps - m, slots - 1) + _binomial_cost(m, slots)
                        for m in range(1, steps))
    return memo[key]


def _binomial_split(steps, slots) -> int:
    """Where the first held value goes (an offset in 1..steps-1) in `_binomial_cost`'s best order."""
    if steps > 256:  # beyond the table: evenly spaced (the cost grows slowly near the best offset)
        return max(1, steps // (slots + 1))
    return min(range(1, steps), key=lambda m: (m + _binomial_cost(steps - m, slots - 1)
                                              + _binomial_cost(m, slots), -m))


def binomial_offsets(steps, slots) -> list:
    """The offsets (1-based, below `steps`) of the values held on a sweep over `steps` values with `slots`."""
    out, base = [], 0
    while slots > 0 and steps - base > 1:
        base += _binomial_split(steps - base, slots)
        out.append(base)
        slots -= 1
    return out


def _schedule(forward, backward, kept, hold=True, materialise=False) -> Schedule:
    """The backward pass with every residual not in `kept` recomputed before its first use.

    `hold`: a segment is recomputed once and each of its values held until its last backward use (about one
    extra forward pass). False: only the values a backward statement reads are held, and the values
    between them and their checkpoint are computed again for each (less memory, more flops). An int:
    binomial checkpointing with that many slots: each recomputation from a checkpoint holds, besides what
    its statement reads, the residuals at `binomial_offsets` of its sweep for as many slots as are free
    (the held residuals still read later take one each), so that the sweeps after it start closer."""
    fwd = set(forward)
    residuals = _ordered_residuals(forward, backward)
    dropped = [v for v in residuals if v not in kept]
    made: dict = {}                  # forward value -> its recomputed value, held until its last reader
    clones: dict = {}
    blocks, out = [], []
    counter = [0]
    binomial = hold is not True and hold is not False
    position = {v: i for i, v in enumerate(residuals)}
    last_read: dict = {}             # residual -> index of the last backward node reading it
    for j, n in enumerate(backward):
        for v in n.inputs:
            if root(v) in position:
                last_read[root(v)] = j
    held_now: set = set()            # residuals a binomial sweep holds

    def available(v):
        if v.node is None or v.node not in fwd:
            return True
        r = root(v)
        return r.node is None or r in kept

    def ensure(v, block, scratch):
        if available(v):
            r = root(v)
            if r.node is not None and r.node in fwd and r not in block.from_values:
                block.from_values.append(r)
            return v
        if v in made:
            return made[v]
        if v in scratch:
            return scratch[v]
        node = v.node
        inputs = [ensure(u, block, scratch) for u in node.inputs]
        clone = Node(node.prim, inputs, node.attrs, node.loc) if materialise else _Shadow(node, inputs)
        for o in node.outputs:
            c = Value(o.shape, o.dtype, clone, o.name) if materialise else _ShadowValue(o, clone)
            if materialise:
                c.weak, c.zero_sum_axes, c.grad_of = o.weak, o.zero_sum_axes, o.grad_of
                c.tangent_of = o.tangent_of
            clone.outputs.append(c)
            (made if hold is True or o in held_now else scratch)[o] = c
        clones[clone] = node
        block.nodes.append(clone)
        counter[0] += node.prim.flops(node)
        return (made if hold is True or v in held_now else scratch)[v]

    def sweep(v, found, seen):
        """The residuals recomputing `v` would compute (none held yet), into `found`."""
        if v in seen or available(v) or v in made:
            return
        seen.add(v)
        for u in v.node.inputs:
            sweep(u, found, seen)
        if v in position:
            found.append(v)

    def plan_sweep(n, j):
        found, seen = [], set()
        for v in n.inputs:
            sweep(v, found, seen)
        found.sort(key=position.get)
        alive = sum(1 for v in set(made) | set(kept) if v in position and last_read.get(v, -1) >= j)
        free = hold - alive
        held_now.clear()
        held_now.update(found[k - 1] for k in binomial_offsets(len(found), free))

    for j, n in enumerate(backward):
        if all(available(v) for v in n.inputs):
            out.append(n)
            continue
        block = Block(n, [], [])
        inputs, scratch = [], {}
        if binomial:
            plan_sweep(n, j)
        for v in n.inputs:
            inputs.append(ensure(v, block, scratch))
            if hold is not True and not available(v):
                for o, c in zip(v.node.outputs, inputs[-1].node.outputs):
                    made[o] = c  # what the statement reads is held for its other readers
        if block.nodes:
            blocks.append(block)
            out.extend(block.nodes)
        if materialise:
            n.inputs = inputs
            out.append(n)
        else:
            out.append(_Shadow(n, inputs, outputs=n.outputs))
    peak = _peak(out, kept, count=lambda node: node in clones)
    return Schedule(set(kept), dropped, out, blocks, clones, peak, counter[0], hold, residuals)


class _Shadow:
    """A node as planned (not built): its primitive, the inputs it would read and its outputs."""

    __slots__ = ("prim", "inputs", "outputs", "original")

    def __init__(self, original, inputs, outputs=None):
        self.prim, self.inputs, self.original = original.prim, inputs, original
        self.outputs = [] if outputs is None else outputs


class _ShadowValue:
    __slots__ = ("shape", "dtype", "node", "size", "name")

    def __init__(self, original, node):
        self.shape, self.dtype, self.node, self.size = original.shape, original.dtype, node, original.size
        self.name = original.name


def _peak(nodes, start, count=None, persist=(), sizes=None) -> int:
    """The most bytes alive at once while `nodes` run, `start` alive before the first, each value dying after
    its last reader (views keep what they read alive), `persist` alive to the end.

    With `count`, only the outputs of the nodes it accepts are counted (besides `start`); `sizes` overrides
    what a value takes."""
    size = nbytes if sizes is None else (lambda v: sizes.get(v, nbytes(v)))
    roots: dict = {}  # a view made by these nodes reads what its input (as these nodes read it) reads

    def root_of(v):
        r = roots.get(v)
        return root(v) if r is None else r

    last: dict = {}
    for i, n in enumerate(nodes):
        for v in n.inputs:
            last[root_of(v)] = i
        if n.prim.view:
            for o in n.outputs:
                roots[o] = root_of(n.inputs[0])
    persist = {root_of(v) for v in persist}
    dying: dict = {}
    for v, i in last.items():
        if v not in persist:
            dying.setdefault(i, []).append(v)
    live = {v: size(v) for v in start if v in last or v in persist}
    total = peak = sum(live.values())
    for i, n in enumerate(nodes):
        for o in n.outputs:
            if o not in live and (count is None or count(n)) and (o in last or o in persist):
                b = size(o)
                if b:
                    live[o] = b
                    total += b
        peak = max(peak, total)
        for v in dying.get(i, ()):
            total -= live.pop(v, 0)
    return peak


def _cheap(v, kept, fwd) -> bool:
    """Recomputing `v` from kept values and inputs takes no matrix product and no reduction."""
    stack, seen = [v], set()
    while stack:
        u = stack.pop()
        if u in seen or u.node is None or u.node not in fwd or (u is not v and root(u) in kept):
            continue
        seen.add(u)
        if not (u.node.prim.view or u.node.prim is Kernel):
            return False
        stack.extend(u.node.inputs)
    return True


def _spaced(residuals, sizes, k) -> set:
    """Checkpoints closing segments of about k residuals' bytes, counted from the loss's end."""
    segment = sum(sizes) * k / len(residuals)
    kept, run = set(), 0
    for v, b in zip(reversed(residuals), reversed(sizes)):
        run += b
        if run >= segment:
            kept.add(v)
            run = 0
    return kept


def _binomial_kept(residuals, slots, last) -> set:
    """What the forward pass keeps for binomial checkpointing: its sweep's held values (and the last)."""
    kept = {residuals[k - 1] for k in binomial_offsets(len(residuals), slots)}
    return kept | {residuals[-1]} if last else kept


def plan(forward, backward, budget: int, loc=None) -> Schedule | None:
    """The schedule with the fewest recomputed flops whose residual peak fits `budget` (None: all fit).

    Tried: the cheap residuals alone dropped; then, held once or recomputed per use, checkpoints every k-th
    residual for the smallest k that fits (recomputed flops grow with k); everything from the inputs last."""
    residuals = _ordered_residuals(forward, backward)
    sizes = [nbytes(v) for v in residuals]
    if sum(sizes) <= budget:
        return None
    fwd = set(forward)
    everything = set(residuals)
    cheap = {v for v in residuals if _cheap(v, everything - {v}, fwd)}
    tried: dict = {}

    def attempt(kept, hold, drop_cheap=True):
        key = (frozenset(kept - cheap if drop_cheap else kept), type(hold).__name__, hold)  # True == 1
        if key not in tried:
            tried[key] = _schedule(forward, backward, key[0], hold)
        return tried[key]

    n = len(residuals)
    grid = sorted({min(n, max(2, round(1.5 ** e))) for e in range(0, 40) if 1.5 ** e < 2 * n})
    slots = sorted({max(1, round(1.5 ** e)) for e in range(0, 40) if 1.5 ** e < n})
    # the same schedules whatever the budget: the smallest budget named in the error is one of them
    fixed = [attempt(everything, True), attempt(set(), False)] + [
        attempt(_spaced(residuals, sizes, k), hold, drop_cheap) for hold in (True, False) for k in grid
        for drop_cheap in (True, False)] + [
        attempt(_binomial_kept(residuals, s, last), s, drop_cheap) for s in slots for last in (False, True)
        for drop_cheap in (True, False)]
    fits = [s for s in fixed if s.residual_peak <= budget]
    for hold in (True, False):
        below = 1
        for k in grid:
            if attempt(_spaced(residuals, sizes, k), hold).residual_peak <= budget:
                lo, hi = below + 1, k  # the smallest k that fits lies in (below, k]
                while lo < hi:
                    mid = (lo + hi) // 2
                    if attempt(_spaced(residuals, sizes, mid), hold).residual_peak <= budget:
                        hi = mid
                    else:
                        lo = mid + 1
                fits.append(attempt(_spaced(residuals, sizes, hi), hold))
                break
            below = k
    if not fits:
        smallest = min([s.residual_peak for s in fixed] + [sum(sizes)])  # all kept: every residual's bytes
        raise CompileError(
            f"memory_budget={budget} bytes ({format_bytes(budget)}) is below what any checkpointing schedule "
            f"reaches for this model: the smallest that works is {smallest} bytes ({format_bytes(smallest)})",
            loc, f"Pass memory_budget={smallest} or more.")
    return min(fits, key=lambda s: (s.extra_flops, s.residual_peak))


def apply(graph, forward_nodes, budget, loc=None):
    """Drop and recompute residuals so that the backward pass keeps at most `budget` bytes of them alive.

    Returns the Schedule applied (clones built into the graph), or None when everything fits."""
    forward = [n for n in graph.nodes if n in forward_nodes]
    backward = [n for n in graph.nodes if n not in forward_nodes]
    chosen = plan(forward, backward, budget, loc)
    if chosen is None:
        return None
    built = _schedule(forward, backward, chosen.kept, chosen.hold, materialise=True)
    graph.nodes = forward + built.backward
    return built


# ---- the report -------------------------------------------------------------------------------

@dataclass
class MemoryReport:
    """What one specialisation keeps from its forward to its backward pass, and what it recomputes."""

    residuals: list = field(default_factory=list)     # (name, source line, bytes, kept)
    recomputed: list = field(default_factory=list)    # (name, source line, flops)
    residual_bytes: int = 0          # every residual, as kept without a budget
    kept_bytes: int = 0              # the residuals kept under the budget
    residual_peak: int = 0           # residual bytes alive at most during the backward pass
    peak_bytes: int = 0              # the generated code's peak of live bytes by its own accounting
    extra_flops: int = 0
    forward_flops: int = 0
    budget: int | None = None
    backend: str = ""

    def __str__(self):
        width = max([len(r[0]) for r in self.residuals] + [8])
        lines = [f"memory of one call ({self.backend} backend"
                 + (f", memory_budget={self.budget} bytes = {format_bytes(self.budget)})" if self.budget else ")"),
                 f"{'residual':<{width}}  {'line':<16} {'bytes':>12}  kept"]
        for name, where, size, kept in self.residuals:
            lines.append(f"{name:<{width}}  {where:<16} {size:>12}  {'yes' if kept else 'recomputed'}")
        lines.append(f"residuals kept:       {self.kept_bytes} bytes ({format_bytes(self.kept_bytes)}) of "
                     f"{self.residual_bytes} ({format_bytes(self.residual_bytes)})")
        lines.append(f"residual peak:        {self.residual_peak} bytes ({format_bytes(self.residual_peak)})")
        lines.append(f"peak live bytes:      {self.peak_bytes} bytes ({format_bytes(self.peak_bytes)}), "
                     "inputs not counted")
        if self.recomputed:
            lines.append(f"recomputed:           {len(self.recomputed)} values, {self.extra_flops} extra flops "
                         f"({self.extra_flops / max(self.forward_flops, 1):.2f}x the forward pass)")
            for name, where, flops in self.recomputed:
                lines.append(f"  {name:<{width}} {where:<16} {flops:>12} flops")
        return "\n".join(lines)

    __repr__ = __str__


def _label(v) -> str:
    """A value's name in the report: the user's, else what it is the gradient or tangent of (d_h, t_h)."""
    if v.name:
        return v.name
    if v.grad_of is not None:
        return "d_" + _label(v.grad_of)
    if v.tangent_of is not None:
        return "t_" + _label(v.tangent_of)
    return "t"


def _where(v) -> str:
    loc = v.node.loc if v.node is not None else None
    return loc.short() if loc and getattr(loc, "line", 0) else "-"


def report(graph, forward_nodes, schedule, results, budget=None, backend="", frees=True,
           min_bytes=0) -> MemoryReport:
    """The memory report of a finished graph (and the schedule that rewrote it, if any).

    `frees`: the code frees each value of at least `min_bytes` at its last use (smaller ones live until it
    returns); without it every value lives until then."""
    forward = [n for n in graph.nodes if n in forward_nodes]
    backward = [n for n in graph.nodes if n not in forward_nodes]
    clones = schedule.clones if schedule is not None else {}
    original_backward = [n for n in backward if n not in clones]
    residuals = schedule.residuals if schedule is not None else _ordered_residuals(forward, original_backward)
    dropped = set(schedule.dropped) if schedule is not None else set()
    rows = [(_label(v), _where(v), nbytes(v), v not in dropped) for v in residuals]
    recomputed = [(_label(c.outputs[0]), _where(f.outputs[0]), f.prim.flops(f)) for c, f in clones.items()]
    kept = {v for v in residuals if v not in dropped}
    r = MemoryReport(residuals=rows, recomputed=recomputed,
                     residual_bytes=sum(nbytes(v) for v in residuals),
                     kept_bytes=sum(nbytes(v) for v in kept),
                     residual_peak=(schedule.residual_peak if schedule is not None
                                    else _peak(backward, kept, count=lambda node: False)),
                     extra_flops=sum(f.prim.flops(f) for f in clones.values()),
                     forward_flops=sum(n.prim.flops(n) for n in forward), budget=budget, backend=backend)
    nodes = forward + backward
    # a gradient assembled from parts (a scatter-add of layers' gradients) is written part by part into its
    # result: the parts take no memory of their own, the result is counted from the start
    scatters = [n for n in nodes if n.prim is ScatterAdd and n.outputs[0] in set(results)]
    sizes = {v: 0 for n in scatters for v in n.inputs}
    if frees:
        small = [o for n in nodes for o in n.outputs if nbytes(o) < min_bytes] if min_bytes else []
        r.peak_bytes = _peak(nodes, [n.outputs[0] for n in scatters], persist=list(results) + small, sizes=sizes)
    else:  # every value the code names lives until it returns
        r.peak_bytes = sum(nbytes(o) for n in nodes for o in n.outputs)
    return r
