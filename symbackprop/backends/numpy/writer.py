"""NumPy source from the optimised IR, rendered through the jinja2 templates.

One statement per node (kernels print one line per temp and output), named after
the user's variables (`h`, and `d_h` for its gradient), each commented with the
model line it comes from. Same IR in, same bytes out.
"""
from __future__ import annotations

import contextlib
import keyword
import re

import numpy as np

from ...dtypes import text as dtype_text
from ...ir import bodies
from ...primitives.elementwise import Fill, Kernel
from ...primitives.gather import AddAt
from ...primitives.index import Index, ScatterAdd, SetIndex, index_text
from ...primitives.shape import BroadcastTo, Reshape, SumTo, Transpose
from ...passes import liveness
from ...rendering import render
from . import rules
from .context import COMMENT_COLUMN, current, with_comment as _with_comment  # noqa: F401 (COMMENT_COLUMN: the layout's)
from .inplace import in_place_lines, writes_in_place
from .printer import MathPrinter, NumpyPrinter, float_literal, kernel_into_lines, kernel_may_warn, kernel_writes_into
from .regions import Scope, write_region
from .stacking import Plan, batch_lines, plan_stacks, slot_lines, slotted

_VIEWS = (Reshape, Transpose, Index, BroadcastTo)
_RESERVED = set(keyword.kwlist) | {"np", "math", "float", "abs", "max", "min", "int", "len", "range", "sum"}


@contextlib.contextmanager
def writing(printer_cls, params):
    """An Writer naming the values of one generated function (parameters keep their names)."""
    writer = Writer(printer_cls, taken=[p.name for p in params])
    writer.names.update({p: p.name for p in params})
    with current(writer):
        yield writer


def inlinable_views(nodes, results):
    """Views read once (W.T, x[0], g[:, None]): written where they are used, not as statements."""
    return _inlinable_views(nodes, results)


class Writer:
    def __init__(self, printer_cls, taken=()):
        self.printer_cls = printer_cls
        self.used = set(_RESERVED) | set(taken)
        self.names: dict = {}
        self.inline: dict = {}
        # products and sums written straight into their slice of an accumulated gradient (d_Ws[2])
        self.into: dict = {}       # producer node -> (scatter node, part index)
        self.scattered: dict = {}  # scatter node -> part indices written in place
        self.stacking = Plan()     # layers' values written into stacks, their gradients batched (stacking.py)
        self.counters: dict = {}
        self.set_in_place: set = set()   # y[i] = v nodes that write into y's array: nothing reads it after
        # under a memory budget: sums over a layer's batch written as the product with ones that the
        # stacked (unbudgeted) code computes for all layers at once, so that both add in one order
        self.ones_sums: set = set()
        # value-dependent regions (regions.py): the node lists being written, outermost first, and how
        # many loops deep the statements being written are
        self.scopes: list = []
        self.loops = 0
        # explain's probe (symbackprop/regions_run.py): forward region node -> its number; each writes
        # `record(number, predicate)` or `record(number, trips)`. None (no such lines) in generated code
        self.probes = None

    def statements(self, nodes, inlinable=frozenset()):
        """Source lines for `nodes` (a region's body), in order."""
        return write_statements(self, nodes, inlinable)

    def inlinable_views(self, nodes, results):
        return _inlinable_views(nodes, results)

    def fresh(self, base):
        base = base if base.isidentifier() else "t"
        if base != "t" and base not in self.used:
            self.used.add(base)
            return base
        sep = "" if base == "t" else "_"
        k = self.counters.get(base, 1)
        while f"{base}{sep}{k}" in self.used:
            k += 1
        self.counters[base] = k + 1
        self.used.add(f"{base}{sep}{k}")
        return f"{base}{sep}{k}"

    def name(self, v):
        if v not in self.names:
            if v.name:
                base = v.name
            elif v.grad_of is not None:
                base = "d_" + self.name(v.grad_of)
            elif v.tangent_of is not None:
                base = "t_" + self.name(v.tangent_of)
            else:
                base = "t"
            self.names[v] = self.fresh(base)
        return self.names[v]

    def arg(self, v):
        """How an input is written: its name, or the literal for a scalar constant."""
        node = v.node
        if node is not None and node.prim is Fill and v.shape == ():
            return float_literal(node.attrs["value"])
        if v in self.inline:
            return self.inline[v]
        return self.name(v)


def write_statements(writer, nodes, inlinable=frozenset()):
    """Source lines for `nodes`, in order."""
    lines = []
    for node in nodes:
        if node.prim is Fill and node.outputs[0].shape == ():
            continue  # scalar constants are written inline
        if bodies(node):  # an `if` or `while` on values: a compound statement
            lines.extend(write_region(node, [writer.arg(v) for v in node.inputs]))
            continue
        if node in writer.stacking.batch:
            lines.extend(_with_comment(t, node.loc) for t in batch_lines(writer, node))
            continue
        args = [writer.arg(v) for v in node.inputs]
        v = slotted(writer, node)
        if v is not None:
            lines.extend(_with_comment(t, node.loc) for t in slot_lines(writer, node, args, v))
            continue
        if node in writer.into:
            lines.extend(_with_comment(t, node.loc) for t in _write_into(writer, node, args))
            continue
        if node in writer.set_in_place:  # the new version of y is y's array, written where it stands
            x = node.inputs[0]
            writer.names[node.outputs[0]] = writer.name(x)
            if node.prim is AddAt:
                text = rules.add_at_text(writer.name(x), node.attrs["key"], args[1], args[2:])
            else:
                text = f"{writer.name(x)}[{index_text(node.attrs['index'])}] = {args[1]}"
            lines.append(_with_comment(text, node.loc))
            continue
        if node.outputs[0] in inlinable:
            # a view read once (W.T, x[0], g[:, None]) reads best where it is used
            writer.inline[node.outputs[0]] = rules.write(node, args, None)
            continue
        # kernels name their outputs as they compute them, after their temps
        outs = None if node.prim is Kernel else [writer.name(v) for v in node.outputs]
        text = _ones_sum(node, args[0]) if node in writer.ones_sums else rules.write(node, args, outs)
        if outs is None:
            outs = [writer.name(v) for v in node.outputs]
        if isinstance(text, str):
            text = [f"{outs[0]} = {text}"]
        lines.extend(_with_comment(t, node.loc) for t in text)
    return lines


def _ones(node) -> str:
    n, dtype = node.inputs[0].shape[0], node.inputs[0].dtype
    return f"np.ones({n}{'' if dtype == np.float64 else f', dtype={dtype_text(dtype)}'})"


def _ones_sum(node, x):
    return f"{_ones(node)} @ {x}"


def _write_into(writer, node, args):
    scatter, k = writer.into[node]
    name = writer.name(scatter.outputs[0])
    lines = []
    if scatter not in writer.scattered:  # allocated where its first part is computed
        whole = scatter.prim.covers(scatter) and all(
            writer.into.get(v.node, (None,))[0] is scatter for v in scatter.inputs)
        lines.append(rules.scatter_allocation(scatter, name, empty=whole))
        writer.scattered[scatter] = set()
    writer.scattered[scatter].add(k)
    target = rules.scatter_target(scatter, name, k)
    if node in writer.ones_sums:
        return lines + [f"np.matmul({_ones(node)}, {args[0]}, out={target})"]
    if node.prim is Kernel:  # an elementwise part (the sum of two products, t_d_Ws[i]) is one ufunc call
        return lines + kernel_into_lines(node, args, 0, target)
    return lines + [rules.write_into(node, args, target)]


def _writes_into(node, slot_shape):
    if node.prim is Kernel:
        return len(node.outputs) == 1 and node.outputs[0].shape == slot_shape and kernel_writes_into(node, 0)
    if not rules.writes_into(node):
        return False
    if node.prim is SumTo:  # only a sum over leading axes is one call with out=
        x, shape = node.inputs[0], node.attrs["shape"]
        lead = x.ndim - len(shape)
        return lead > 0 and all(s == x.shape[lead + i] for i, s in enumerate(shape))
    return True


def plan_writes_into(writer, nodes, results):
    """Parts of a scatter-add over distinct leading indices, made by a product or a sum read nowhere else."""
    uses: dict = {}
    for n in nodes:
        for v in n.inputs:
            uses[v] = uses.get(v, 0) + 1
    node_set = set(nodes)
    for s in nodes:
        if s.prim is not ScatterAdd or not s.prim.disjoint_rows(s):
            continue
        for k, g in enumerate(s.inputs):
            p = g.node
            # a 0-d part's slot (t[1] of a vector) is a number, not a view out= could write into
            if (p is not None and p in node_set and _writes_into(p, tuple(s.attrs["shape"][1:]))
                    and len(p.outputs) == 1 and g.ndim > 0
                    and uses.get(g) == 1 and g not in results and g.dtype == s.attrs["dtype"]
                    and p not in writer.into and p not in writer.stacking.batch
                    and slotted(writer, p) is None):
                writer.into[p] = (s, k)


def plan_set_in_place(writer, nodes, results):
    """The element assignments that may write into their array instead of a copy: the old version is an
    array of this function's own (not a parameter, a result, a view or a stack's slot), and neither it
    nor any view of it is read after the assignment."""
    position = {n: i for i, n in enumerate(nodes)}
    readers: dict = {}
    for n in nodes:
        for v in n.inputs:
            readers.setdefault(v, []).append(n)
    results = set(results)

    def last_read(v):
        last = -1
        for r in readers.get(v, ()):
            last = max(last, position[r])
            if r.prim in _VIEWS:
                last = max(last, last_read(r.outputs[0]))
        return last

    for n in nodes:
        if n.prim is not SetIndex and n.prim is not AddAt:
            continue
        x = n.inputs[0]
        p = x.node
        if (p is None or p not in position or x in results or x.ndim == 0 or p.prim in _VIEWS
                or p in writer.into or p in writer.stacking.batch or slotted(writer, p) is not None):
            continue
        if last_read(x) <= position[n]:
            writer.set_in_place.add(n)
            if n.prim is AddAt and not x.name and x.grad_of is None and x not in writer.names:
                writer.names[x] = writer.name(n.outputs[0])  # the base is the gradient being made: d_z


def write_updates(writer, nodes, updates, inlinable):
    """The update section: an update kernel overwrites its target in place; other new values are copied in last."""
    in_place = {new.node: target for target, new in updates if writes_in_place(new, set(nodes))}
    read = {v for n in nodes for v in n.inputs}
    # a constant array only an update reads (the gradient sums set back to zero) is never made: `acc[...] = 0.0`
    constants = {new.node: repr(float(new.node.attrs["value"])) for _, new in updates
                 if new.node in nodes and new.node.prim is Fill and new not in read}
    lines = []
    for node in nodes:
        if node in in_place:
            written = in_place_lines(writer, node, in_place[node])
            lines += [_with_comment(written[0], node.loc)] + written[1:]  # the rule's formula, once
        elif node in constants:
            continue
        else:
            lines.extend(write_statements(writer, [node], inlinable))
    for target, new in updates:
        if new.node in constants:
            lines.append(_with_comment(f"{writer.name(target)}[...] = {constants[new.node]}", new.node.loc))
        elif new.node not in in_place and new is not target:
            lines.append(f"{writer.name(target)}[...] = {writer.arg(new)}")
    return lines


def has_regions_in(nodes) -> bool:
    return any(bodies(n) for n in nodes)


def _inlinable_views(nodes, results):
    uses: dict = {}
    for n in nodes:
        for v in n.inputs:
            uses[v] = uses.get(v, 0) + 1
    return frozenset(n.outputs[0] for n in nodes
                     if n.prim in _VIEWS and n.prim is not BroadcastTo and uses.get(n.outputs[0], 0) == 1
                     and n.outputs[0] not in results)


def returned(writer, v, spec, others):
    """The expression returning `v` for a parameter described by `spec`: fresh memory, its dtype."""
    text = writer.arg(v)
    if spec.kind == "float":
        return text if writer.printer_cls is MathPrinter else f"float({text})"
    if spec.shape == ():
        return f"float({text})" if spec.dtype.name == "float64" else f"{dtype_text(spec.dtype)}({text})"
    node = v.node
    if v.dtype != spec.dtype:
        return f"{text}.astype({dtype_text(spec.dtype)})"
    if node is None or node.prim in _VIEWS or others.count(v) > 1:
        return f"np.array({text})"  # never hand out a view of an input or of another result
    return text


def returned_aux(writer, v, others):
    """The expression returning the aux array `v`: a number for a 0-d one, else fresh memory."""
    text = writer.arg(v)
    if writer.printer_cls is MathPrinter:
        return text
    if v.shape == ():
        kind = v.dtype.kind
        return {"b": "bool", "i": "int", "u": "int"}.get(kind, "float" if v.dtype.name == "float64" else
                                                         f"{dtype_text(v.dtype)}") + f"({text})"
    node = v.node
    if node is None or node.prim in _VIEWS or others.count(v) > 1:
        return f"np.array({text})"  # never hand out a view of an input or of another result
    return text
_ASSIGNED = re.compile(r"^([A-Za-z_]\w*(?:, [A-Za-z_]\w*)*) = ")


class _Freeing:
    """Writes `del` after the statement where a value (or a kernel's temporary) is read for the last time
    (passes/liveness.py): the memory the generated code holds is then what the memory report counts.

    Without a budget only large values are freed (`min_bytes`); under one, every value."""

    def __init__(self, writer, nodes, inlinable, keep, schedule, min_bytes=0):
        self.writer, self.inlinable, self.min_bytes = writer, inlinable, min_bytes
        self.index = {n: i for i, n in enumerate(nodes)}
        aliases = [(n.inputs[0], n.outputs[0]) for n in writer.set_in_place]  # one array, two versions
        self.dying = liveness.dying(nodes, inlinable, keep, _alias_groups(aliases), min_bytes)
        self.bound: set = set()
        self.headers = {b.nodes[0]: b for b in schedule.blocks} if schedule is not None else {}

    def header(self, block) -> str:
        name = self.writer.name
        made = ", ".join(name(c.outputs[0]) for c in block.nodes if not c.prim.view)
        source = ", ".join(name(v) for v in block.from_values)
        source = f"checkpoint {source}" if source else "the inputs"
        return f"# recomputed from {source} (dropped under memory_budget): {made}"

    def statements(self, nodes):
        writer, lines = self.writer, []
        for node in nodes:
            if node in self.headers:
                lines.append(self.header(self.headers[node]))
            emitted = write_statements(writer, [node], self.inlinable)
            lines.extend(emitted)
            named = {writer.names.get(o) for o in node.outputs}
            bound = []
            for line in emitted:
                m = _ASSIGNED.match(line)
                if m:
                    bound.extend(m.group(1).split(", "))
            self.bound.update(bound)
            dead = []
            if node.prim is Kernel and max(liveness.nbytes(o) for o in node.outputs) >= self.min_bytes:
                values = set(writer.names.values())
                dead = [t for t in dict.fromkeys(bound) if t not in named and t not in values]  # its temporaries
            for v in self.dying.get(self.index[node], []):
                if v in writer.inline:
                    continue
                text = writer.names.get(v)
                if text is not None and text in self.bound and text not in dead:
                    dead.append(text)
                    self.bound.discard(text)
            if dead:
                lines.append("del " + ", ".join(dead))
        return lines


def _alias_groups(pairs):
    """Chains of versions sharing one array: (x, y) and (y, z) make one group."""
    group: dict = {}
    for a, b in pairs:
        g = group.get(a) or group.get(b) or []
        for v in (a, b):
            if v not in g:
                g.append(v)
            group[v] = g
    return list({id(g): g for g in group.values()}.values())


def _batched_sums(printer_cls, params, forward_list, backward_list, results, schedule):
    """The sums over a layer's batch that stacked code would compute as one product with ones."""
    with writing(printer_cls, params) as scratch:
        plan_stacks(scratch, forward_list + [n for n in backward_list if n not in schedule.clones], results)
        return {n for n, batch in scratch.stacking.batch.items()
                if n.prim is SumTo and batch.kind != "matmul" and batch.lead == 1
                and n.inputs[0].dtype.kind == "f"}


def write_function(name, params, specs, nodes, forward_nodes, value, grads, grad_specs, doc,
                  scalar=False, single=True, updates=(), update_nodes=frozenset(), update_title="update",
                  aux=(), aux_text=None, schedule=None):
    """The text of one generated function; returns (text, uses_math).

    `updates` are (target, new value) pairs: the nodes in `update_nodes` form a last section that
    writes each new value into its target (a parameter of the function) in place. With `aux_text`
    (has_aux=True; a function of the leaves' expressions giving the tree's source), the value
    returned is `(loss, aux)`, the arrays of aux being `aux`. Under a memory budget (`schedule`,
    transforms/recompute.py) values are deleted at their last use and layers are not stacked.
    """
    printer_cls = MathPrinter if scalar else NumpyPrinter
    with writing(printer_cls, params) as writer:
        for target, new in updates:  # written in place: the new value is read under its target's name
            if writes_in_place(new, update_nodes):
                writer.names[new] = target.name
        aux = list(aux)
        inlinable = _inlinable_views(nodes, [value] + aux + list(grads or []))
        forward_list = [n for n in nodes if n in forward_nodes]
        backward_list = [n for n in nodes if n not in forward_nodes and n not in update_nodes]
        if has_regions_in(nodes):  # a region reads its inputs by name, at every iteration
            inlinable -= {v for n in nodes if bodies(n) for v in n.inputs}
            # in the order written (a backward node may stand before a forward one in the graph's list)
            written = forward_list + backward_list + [n for n in nodes if n in update_nodes]
            writer.scopes.append(Scope(written, [value] + aux + list(grads or []) + list(params)
                                       + [t for t, _ in updates] + [new for _, new in updates], inlinable))
        results = [value] + list(grads or []) + [new for _, new in updates]
        if not scalar:
            results = [value] + aux + list(grads or []) + [new for _, new in updates]
            if schedule is None:  # a stack keeps every layer's value: not under a memory budget
                plan_stacks(writer, forward_list + backward_list, results)
            else:
                writer.ones_sums = _batched_sums(printer_cls, params, forward_list, backward_list, results,
                                                 schedule)
            plan_writes_into(writer, [n for n in nodes if n not in update_nodes], [value] + aux + list(grads or []))
            if schedule is None:  # under a budget values are deleted by name: each version keeps its own
                plan_set_in_place(writer, forward_list + backward_list + [n for n in nodes if n in update_nodes],
                                  results)
        if scalar:
            forward = write_statements(writer, forward_list, inlinable)
            backward = write_statements(writer, backward_list, inlinable)
        else:
            keep = results + [t for t, _ in updates] + list(params)
            # the updates read gradients last; without a budget only large values are freed
            freeing = _Freeing(writer, nodes, inlinable, keep, schedule,
                               min_bytes=liveness.LARGE_BYTES if schedule is None else 0)
            forward = freeing.statements(forward_list)
            backward = freeing.statements(backward_list)
        update = write_updates(writer, [n for n in nodes if n in update_nodes], updates, inlinable)
        value_text = writer.arg(value)
        if not scalar and value.node is not None and value.node.prim is Fill and value.shape == () \
                and value.dtype.name != "float64":
            value_text = f"{dtype_text(value.dtype)}({value_text})"  # a loss that cancels (v - v) keeps the model's dtype
        if aux_text is not None:
            others = [value] + aux + list(grads or [])
            value_text = f"{value_text}, {aux_text([returned_aux(writer, v, others) for v in aux])}"
            if grads is not None:
                value_text = f"({value_text})"
        if grads is None:
            ret = value_text
        else:
            parts = [returned(writer, g, s, list(grads)) for g, s in zip(grads, grad_specs)]
            ret = f"{value_text}, {parts[0] if single else '(' + ', '.join(parts) + (',)' if len(parts) == 1 else ')')}"
    errstate = not scalar and any(n.prim is Kernel and kernel_may_warn(n) for n in nodes)
    sections = [{"title": "forward", "lines": forward}]
    if grads is not None or updates:
        sections.append({"title": "backward: each gradient is the residual times the local derivative",
                         "lines": backward})
    if updates:
        sections.append({"title": update_title, "lines": update})
    text = render("numpy_function.py.j2", name=name, params=[p.name for p in params], doc=doc,
                  errstate=errstate, indent=" " * (8 if errstate else 4), sections=sections, ret=ret)
    uses_math = scalar and "math." in text
    return text, uses_math
