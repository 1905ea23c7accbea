"""Unrolled layers computed as stacks: one batched call for all their weight gradients.

A loop over stacked weights, `for i in range(n): h = np.tanh(h @ Ws[i] + bs[i])`,
unrolls into n layers, and reverse mode gives each layer its own weight and
bias gradient, `d_Ws[i] = h_in.T @ d_t` and `d_bs[i] = d_t.sum(axis=0)`: 2n
small NumPy calls of about a microsecond each. When every layer's input is
written into one array as it is computed (`hs[i]`, through the producer's
`out=`) and so is every layer's `d_t`, they are n products of slices of two
stacks, computed as one:

    d_Ws = np.matmul(hs[:16].transpose(0, 2, 1), d_ts)
    d_bs = np.ones(16) @ d_ts           (the sum over each layer's batch, as one product)

A factor of the layers' local derivative that reads only forward values
(`1 - h**2` in `d_t = d_h*(1 - h**2)`) is computed for all layers at once
before the backward chain (`d_ts = 1 - hs[1:]**2`); each layer then multiplies
its gradient into its slot in place. What is computed is that of the unbatched
code, the same products, sums and factors grouped into fewer calls; sums may
add in another order (the last bits of a gradient can differ).

Layers of 64 KiB or more (passes/liveness.py) are not stacked: a stack of their gradients
would hold one per layer at once, where the per-layer code frees each at its last use.
"""
from __future__ import annotations

import numpy as np
import sympy

from ...dtypes import text as dtype_text
from ...passes import liveness
from ...primitives.elementwise import Kernel, arg, expand, operand_dtypes
from ...primitives.index import ScatterAdd
from ...primitives.linalg import MatMul
from ...primitives.shape import SumTo, Transpose
from .printer import kernel_into_lines, kernel_printer, kernel_writes_into, numpy_dtype
from .rules import reduction_call


class Stack:
    """Values of one shape and dtype, each written into its own slot of one array."""

    def __init__(self, values):
        self.values = list(values)
        self.name = None
        self.init = None  # (factor, {input position: run}): the slots start as this factor of the layers

    @property
    def shape(self):
        return (len(self.values),) + self.values[0].shape

    @property
    def dtype(self):
        return self.values[0].dtype


class Batch:
    """Parts of a scatter-add computed as one call on runs of stacks, where the last part was."""

    def __init__(self, scatter, members, kind, runs, transposed=(), lead=0):
        self.scatter, self.members, self.kind = scatter, members, kind
        self.runs, self.transposed, self.lead = runs, transposed, lead
        self.waiting = len(members)


class Plan:
    """What the writer writes differently: slots, batched groups, hoisted factors."""

    def __init__(self):
        self.slot: dict = {}      # value -> Stack whose slot its producer writes into
        self.batch: dict = {}     # member node -> Batch
        self.hoisted: dict = {}   # kernel node -> the factor it keeps (the rest is in its slot already)
        self.allocated: set = set()


def plan_stacks(writer, nodes, results):
    """Find the batched groups in `nodes` (in the order they are emitted) and record them on the writer."""
    planner = _Planner(writer, nodes, results)
    for s in nodes:
        if s.prim is ScatterAdd and s.prim.disjoint_rows(s) and s.prim.covers(s) and len(s.inputs) > 1:
            planner.try_group(s)
    for stack in list(planner.stacks):
        planner.try_hoist(stack)
    plan = writer.stacking
    plan.slot = {v: s for s in planner.stacks for v in s.values}
    plan.batch = planner.batch
    plan.hoisted = planner.hoisted


class _Planner:
    def __init__(self, writer, nodes, results):
        self.writer = writer
        self.order = {n: i for i, n in enumerate(nodes)}
        self.uses: dict = {}
        for n in nodes:
            for v in n.inputs:
                self.uses[v] = self.uses.get(v, 0) + 1
        self.results = set(results)
        self.stacks: list[Stack] = []
        self.batch: dict = {}
        self.hoisted: dict = {}

    # ---- stacks ----------------------------------------------------------------------------

    def packable(self, v) -> bool:
        """Whether `v` can live in a slot: a parameter (copied in) or a product or kernel written with out=."""
        if v in self.results or v.ndim == 0:
            return False
        node = v.node
        if node is None:
            return True
        if node not in self.order or node in self.writer.into or node in self.batch:
            return False
        if node.prim is MatMul:
            return True
        # a kernel writes one of its outputs into a slot (the others are named as usual)
        k = _index(node.outputs, v)
        return (node.prim is Kernel and kernel_writes_into(node, k)
                and not any(self.slot_of(w) for w in node.outputs if w is not v))

    def slot_of(self, v):
        return next((s for s in self.stacks if any(w is v for w in s.values)), None)

    def fits(self, seq):
        """Where the run `seq` would go: (stack or None for a new one, offset of seq[0]); None if nowhere."""
        first = seq[0]
        if len(set(map(id, seq))) != len(seq) or any(v.shape != first.shape or v.dtype != first.dtype for v in seq):
            return None
        found = {id(s): s for s in (self.slot_of(v) for v in seq) if s is not None}
        if not found:
            ok = all(self.packable(v) for v in seq) and any(v.node is not None for v in seq)
            return (None, 0) if ok else None
        if len(found) > 1:
            return None
        (stack,) = found.values()
        if stack.values[0].shape != first.shape or stack.dtype != first.dtype:
            return None
        j, v = next((j, v) for j, v in enumerate(seq) if self.slot_of(v) is stack)
        offset = _index(stack.values, v) - j
        for j, v in enumerate(seq):
            pos = offset + j
            if 0 <= pos < len(stack.values):
                if stack.values[pos] is not v:
                    return None
            elif stack.init is not None or not self.packable(v):
                return None
        return stack, offset

    def place(self, seq, where):
        stack, offset = where
        if stack is None:
            stack = Stack(seq)
            self.stacks.append(stack)
            return stack
        if offset < 0:
            stack.values[0:0] = seq[:-offset]
        tail = offset + len(seq) - len(stack.values)
        if tail > 0:
            stack.values.extend(seq[len(seq) - tail:])
        return stack

    def place_all(self, seqs) -> bool:
        """Place every run or none of them."""
        saved = [(s, list(s.values)) for s in self.stacks]
        count = len(self.stacks)
        for seq in seqs:
            where = self.fits(seq)
            if where is None:
                for s, values in saved:
                    s.values = values
                del self.stacks[count:]
                return False
            self.place(seq, where)
        return True

    # ---- groups ----------------------------------------------------------------------------

    def try_group(self, s):
        rows = [key[0] for key in s.attrs["indexes"]]
        parts = [g for _, g in sorted(zip(rows, s.inputs), key=lambda rg: rg[0])]
        producers = [g.node for g in parts]
        if any(p is None or p not in self.order or len(p.outputs) != 1 or self.uses.get(g) != 1
               or g in self.results or g.dtype != s.attrs["dtype"] or p.prim is not producers[0].prim
               or p in self.batch for p, g in zip(producers, parts)):
            return
        prim = producers[0].prim
        if prim is MatMul and all(p.inputs[0].ndim == 2 and p.inputs[1].ndim == 2 for p in producers):
            runs, transposed = [], []
            for pos in (0, 1):
                seq = [p.inputs[pos] for p in producers]
                t = all(v.node is not None and v.node.prim is Transpose for v in seq)
                runs.append([v.node.inputs[0] for v in seq] if t else seq)
                transposed.append(t)
            if not _large(runs) and self.place_all(runs):
                self._record(Batch(s, producers, "matmul", runs, tuple(transposed)))
        elif prim is SumTo:
            x, shape = producers[0].inputs[0], producers[0].attrs["shape"]
            lead = x.ndim - len(shape)
            same = all(p.inputs[0].shape == x.shape and p.attrs["shape"] == shape for p in producers)
            if same and lead > 0 and x.shape[lead:] == tuple(shape):
                run = [p.inputs[0] for p in producers]
                if not _large([run]) and self.place_all([run]):
                    self._record(Batch(s, producers, "sum", [run], lead=lead))

    def _record(self, batch):
        for p in batch.members:
            self.batch[p] = batch

    def try_hoist(self, stack):
        """Compute the factor of the stack's kernels that reads only earlier stacked values, for all layers at once."""
        kernels = [v.node for v in stack.values]
        if any(k is None or k.prim is not Kernel or len(k.outputs) != 1 for k in kernels) or stack.init is not None:
            return
        first = kernels[0]
        if first.attrs["program"] or any(
                k.attrs["outs"] != first.attrs["outs"] or k.attrs["program"] or
                [v.shape for v in k.inputs] != [v.shape for v in first.inputs] or
                [v.dtype for v in k.inputs] != [v.dtype for v in first.inputs] for k in kernels):
            return
        (body,) = expand((), first.attrs["outs"])
        if not body.is_Mul:
            return
        start = min(self.order[k] for k in kernels)
        early = {p for p in range(len(first.inputs))
                 if all(v.shape == first.outputs[0].shape and (v.node is None or self.order.get(v.node, start) < start)
                        for v in (k.inputs[p] for k in kernels))}
        symbols = {arg(p) for p in early}
        factor = [f for f in body.args if f.free_symbols and f.free_symbols <= symbols]
        rest = [f for f in body.args if f not in factor]
        if not factor or not any(f.free_symbols for f in rest):
            return
        factor = sympy.Mul(*factor)
        if factor.is_Symbol:
            return  # nothing to compute: the slot would only copy a value
        positions = sorted(int(s.name[1:]) for s in factor.free_symbols)
        runs = {p: [k.inputs[p] for k in kernels] for p in positions}
        dtypes = operand_dtypes(first.inputs)
        if numpy_dtype(factor, dtypes) != stack.dtype or any(v.weak for r in runs.values() for v in r):
            return
        if not self.place_all(list(runs.values())):
            return
        stack.init = (factor, runs)
        for k in kernels:
            self.hoisted[k] = sympy.Mul(*rest)


def _large(runs) -> bool:
    """Layers too large to stack: a stack of their gradients would keep one per layer alive at once (the
    unstacked code frees each at its last use), and one call per layer costs nothing beside their work."""
    return any(liveness.nbytes(v) >= liveness.LARGE_BYTES for run in runs for v in run)


def _index(values, v):
    return next(i for i, w in enumerate(values) if w is v)


# ---- emission ----------------------------------------------------------------------------------

def _stack_name(writer, stack):
    if stack.name is None:
        bases = []
        for v in stack.values:
            if v.name:
                bases.append(v.name)
            elif v.grad_of is not None:
                bases.append("d_" + (v.grad_of.name or "t"))
        base = max(sorted(set(bases)), key=bases.count) if bases else "stack"
        stack.name = writer.fresh(base + "s")
    return stack.name


def run_text(writer, run):
    """The slice of a stack holding `run`, in order."""
    stack = writer.stacking.slot[run[0]]
    start, stop = _index(stack.values, run[0]), _index(stack.values, run[0]) + len(run)
    name = _stack_name(writer, stack)
    if (start, stop) == (0, len(stack.values)):
        return name
    return f"{name}[{start or ''}:{'' if stop == len(stack.values) else stop}]"


def _allocate(writer, stack):
    """The statements making the stack: the hoisted factor for all layers, or empty slots and copied parameters."""
    writer.stacking.allocated.add(stack)
    name = _stack_name(writer, stack)
    if stack.init is not None:
        factor, runs = stack.init
        printer = kernel_printer(stack.values[0].node, {arg(p): run_text(writer, r) for p, r in runs.items()})
        return [f"{name} = {printer.doprint(factor)}"]
    lines = [f"{name} = np.empty({stack.shape!r}, dtype={dtype_text(stack.dtype)})"]
    lines += [f"{name}[{i}] = {writer.name(v)}" for i, v in enumerate(stack.values) if v.node is None]
    return lines


def slotted(writer, node):
    """The output of `node` written into a slot of a stack, or None."""
    return next((v for v in node.outputs if v in writer.stacking.slot), None)


def slot_lines(writer, node, args, v):
    """The statements of a node whose output `v` is written into its slot of a stack."""
    stack = writer.stacking.slot[v]
    lines = [] if stack in writer.stacking.allocated else _allocate(writer, stack)
    target = f"{_stack_name(writer, stack)}[{_index(stack.values, v)}]"
    if node.prim is Kernel and node not in writer.stacking.hoisted:
        return lines + kernel_into_lines(node, args, _index(node.outputs, v), target)
    name = writer.name(v)
    if node in writer.stacking.hoisted:
        rest = writer.stacking.hoisted[node]
        printer = kernel_printer(node, {arg(i): a for i, a in enumerate(args)})
        return lines + [f"{name} = np.multiply({printer.doprint(rest)}, {target}, out={target})"]
    return lines + [f"{name} = np.matmul({args[0]}, {args[1]}, out={target})"]


def batch_lines(writer, node):
    """Nothing for a batched part, and the one batched call in place of the last."""
    batch = writer.stacking.batch[node]
    batch.waiting -= 1
    if batch.waiting:
        return []
    s = batch.scatter
    writer.scattered[s] = set(range(len(s.inputs)))  # the scatter-add itself writes nothing more
    name = writer.name(s.outputs[0])
    if batch.kind == "matmul":
        a, b = (run_text(writer, r) + (".transpose(0, 2, 1)" if t else "")
                for r, t in zip(batch.runs, batch.transposed))
        return [f"{name} = np.matmul({a}, {b})"]
    (run,) = batch.runs
    if batch.lead == 1 and run[0].ndim == 2 and run[0].dtype.kind == "f":
        # every layer's sum over its batch as one product with ones: 2.2 us where .sum(axis=1) takes 6.5
        # (NumPy reduces a middle axis slowly; W5's 16 x 16 x 32 stack). `ones @ stack` contracts the
        # stack's second-to-last axis, which is the layers' batch axis only when each layer is a matrix:
        # for vectors (a loop's w[j] * x[j:j + n]) it is the layer axis itself (a core-dimension mismatch,
        # or when the lengths agree a silently wrong sum), and for 3-d layers it is their middle axis.
        ones = f"np.ones({run[0].shape[0]}{'' if run[0].dtype == np.float64 else f', dtype={dtype_text(run[0].dtype)}'})"
        return [f"{name} = {ones} @ {run_text(writer, run)}"]
    ndim = run[0].ndim + 1
    return [f"{name} = {reduction_call('sum', run_text(writer, run), tuple(range(1, 1 + batch.lead)), ndim, False)}"]
