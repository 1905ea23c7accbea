"""Value-dependent `if` and `while` (primitives/control.py) as basic blocks, the tape as growing buffers.

    if      cond = load pred; br cond, then, else; each branch's body lowered in its block, its
            results written into the region's outputs; both branches meet in `merge`
    while   carried <- init; trips = 0; header: the condition's body, br go, body, exit;
            body: push the tapes read before the step, reserve the entries of the values it
            computes (a kernel writes straight into its tape entry), the step's body, the new
            carried values, copy in the other tapes' entries, trips += 1, br header
    replay  adjoints <- seeds; i = trips; header: br i > 0, step, exit;
            step: i -= 1, pop one entry of each tape (a pointer into the tape: nothing is copied),
            the backward body, the new adjoints, br header

A tape (tapes.py) is freed when the scope that made it ends (the function, or one iteration of an
enclosing loop), after the backward pass has read it.

A body's result that a kernel or fill computes after the body's last read of the value it replaces
is written straight into the carried buffer (or the replay's adjoint), not into a temporary copied
there at the end of the step.

A body is lowered in a scope of its own (Lowering.scope): its temporaries are freed at their last
read inside the body or at its end, every iteration, so a loop's memory does not grow with its trips.
"""
from __future__ import annotations

from contextlib import contextmanager

from llvmlite import ir

from ...errors import CompileError
from ...primitives.control import If, Replay, Tape, While
from ...primitives.elementwise import Fill, Kernel
from ...primitives.linalg import MatMul
from ...primitives.reduce import Max, Min, Sum
from .loops import I8, I64
from .lower import lowers
from .tapes import PTR, clear, entry_bytes, free_tape, pop, push, reserve

_ZERO = ir.Constant(I64, 0)
#: a value copied aside (a swap of carried values) goes on the stack up to this size, else to malloc
_STACK_BYTES = 4096


def copy(L, v, dst):
    """The value `v` (its buffer, or its tape's words, moved) written into `dst`."""
    src = L.buffer(v)
    if src is dst:
        return
    nbytes = entry_bytes(v)
    L.memcpy(dst, src, nbytes)
    if isinstance(v, Tape):
        clear(L.b, src)


@contextmanager
def scope(L, graph, bind, keep=()):
    """Lower `graph`'s nodes with its params in the buffers `bind` gives; inside the `with`, the
    caller reads its results (and `keep`); on leaving, what the body allocated is freed."""
    saved = (L.order, L.last_use, L.owned, L.tapes, L.row_passes, L.row_pass_nodes)
    L.order, L.owned, L.tapes, L.row_passes, L.row_pass_nodes = list(graph.nodes), [], [], [], set()
    L.last_use = {}
    for i, node in enumerate(L.order):
        for v in node.inputs:
            L.last_use[v] = i
    for v in [r for r in graph.results if r is not None] + list(keep):
        L.last_use[v] = len(L.order)
    try:
        for p, ptr in zip(graph.params, bind):
            L.buffers[p] = ptr
        L.lower_nodes()
        yield
        for v, ptr in L.owned:
            L.release(v, ptr)
        for ptr in L.tapes:
            free_tape(L, ptr)
    finally:
        L.order, L.last_use, L.owned, L.tapes, L.row_passes, L.row_pass_nodes = saved


#: nodes whose outputs get buffers of their own (L.define), which may be given to them instead: a tape's entry,
#: a carried value's buffer
_OWN_BUFFER = (Kernel, Fill)
#: nodes that read their inputs and keep no view of them
_READ_ONLY = (Kernel, Fill, Sum, Max, Min, MatMul)


def _computes_own(body, v):
    return v.node is not None and v.node in body.nodes and v.node.prim in _OWN_BUFFER \
        and not isinstance(v, Tape)


def _into_targets(L, body, params, targets):
    """{result: its target buffer} for the body's results that can be computed straight into their target:
    made by a kernel or a fill after every read of the param the target holds, that param neither a result
    nor read through a view, the result neither given a buffer already nor a result twice."""
    position = {n: i for i, n in enumerate(body.nodes)}
    results = [r for r in body.results if r is not None]
    out = {}
    for r, p, dst in zip(body.results, params, targets):
        if r is None or not _computes_own(body, r) or r in L.direct or sum(x is r for x in results) > 1 \
                or any(x is p for x in results):
            continue
        readers = [n for n in body.nodes if any(v is p for v in n.inputs)]
        if all(n.prim in _READ_ONLY and position[n] < position[r.node] for n in readers):
            out[r] = dst
    return out


@contextmanager
def _given(L, buffers):
    """Inside the `with`, the values in `buffers` are defined into the buffers given (L.direct)."""
    L.direct.update(buffers)
    try:
        yield
    finally:
        for v in buffers:
            del L.direct[v]


def _truth(L, v):
    return L.b.icmp_unsigned("!=", L.b.load(L.buffer(v), typ=I8), ir.Constant(I8, 0))


def _define_all(L, values):
    return [L.define(v) for v in values]


def _assign(L, results, targets, carried):
    """Write each result into its target buffer, all at once: a result that lives in one of the
    `carried` buffers (a swap `a, b = b, a`, or a view of one) is first copied aside."""
    carried = set(map(id, carried))
    staged = []
    for r, dst in zip(results, targets):
        if r is None:
            continue
        src = L.buffer(r)
        root = L.view_roots.get(r, r)
        if src is dst and root is r:
            continue
        if id(src) in carried or id(L.buffers.get(root)) in carried:
            nbytes = entry_bytes(r)
            if nbytes <= _STACK_BYTES:
                tmp = L.allocas.alloca(I8, size=nbytes)
            else:
                tmp = L.b.call(L._libc("malloc", PTR, [I64]), [ir.Constant(I64, nbytes)])
            L.memcpy(tmp, src, nbytes)
            staged.append((tmp, dst, nbytes))
        else:
            staged.append((None, dst, r))
    for tmp, dst, what in staged:
        if tmp is None:
            copy(L, what, dst)
        else:
            L.memcpy(dst, tmp, what)
            if what > _STACK_BYTES:
                L.b.call(L._libc("free", ir.VoidType(), [PTR]), [tmp])


def _check_layouts(node, sources, targets):
    """Each value written into a region's output (or carried buffer) has that output's dtype and shape: a
    mismatch would copy the wrong number of bytes, so it is an internal error, never a lowering."""
    for v, out in zip(sources, targets):
        if v is not None and (v.dtype != out.dtype or v.shape != out.shape):
            raise CompileError(f"internal: the `{node.prim.describe(node)}` region writes a {v.dtype}{list(v.shape)} "
                               f"value into its {out.dtype}{list(out.shape)} output (LLVM lowering)", node.loc)


@lowers(If)
def lower_if(L, node):
    for body in node.attrs["bodies"]:
        _check_layouts(node, body.results, node.outputs)
    outs = _define_all(L, node.outputs)
    go = _truth(L, node.inputs[0])
    fn = L.b.block.parent
    blocks = [fn.append_basic_block(f"if.{k}") for k in ("then", "else")]
    merge = fn.append_basic_block("if.end")
    L.b.cbranch(go, *blocks)
    for block, body in zip(blocks, node.attrs["bodies"]):
        L.b.position_at_end(block)
        bind = [L.buffer(v) for v in node.inputs[1:]]
        with scope(L, body, bind):
            _assign(L, body.results, outs, ())
        L.b.branch(merge)
    L.b.position_at_end(merge)


@lowers(While)
def lower_while(L, node):
    n = node.attrs["carried"]
    cond, body = node.attrs["bodies"]
    _check_layouts(node, node.inputs[:n], node.outputs[:n])
    _check_layouts(node, body.results, node.outputs[:n])
    carried = _define_all(L, node.outputs[:n])
    for v, dst in zip(node.inputs[:n], carried):
        copy(L, v, dst)
    captured = [L.buffer(v) for v in node.inputs[n:]]
    count = None
    if "count" in node.attrs:
        count = L.define(node.outputs[node.attrs["count"]])
        L.b.store(_ZERO, count)
    tapes = [(source, L.define(out)) for source, out in node.attrs.get("tapes", ())]
    fn = L.b.block.parent
    header, step, done = (fn.append_basic_block(f"while.{k}") for k in ("cond", "body", "end"))
    L.b.branch(header)
    L.b.position_at_end(header)
    with scope(L, cond, carried + captured):
        go = _truth(L, cond.results[0])
    L.b.cbranch(go, step, done)
    L.b.position_at_end(step)
    params = set(body.params)
    for source, tape in tapes:
        if source in params:
            ptr = (carried + captured)[body.params.index(source)]
            push(L, tape, ptr, entry_bytes(source), move=False)
    given = {source: reserve(L, tape, entry_bytes(source)) for source, tape in tapes
             if source not in params and _computes_own(body, source) and source not in L.direct}
    with _given(L, given):
        given = {**given, **_into_targets(L, body, body.params[:n], carried)}
    with _given(L, given), scope(L, body, carried + captured, keep=[s for s, _ in tapes]):
        for source, tape in tapes:  # the values the step computed, before the carried ones are overwritten
            if source not in params and source not in given:
                push(L, tape, L.buffer(source), entry_bytes(source), move=isinstance(source, Tape))
        _assign(L, body.results, carried, carried)
    if count is not None:
        L.b.store(L.b.add(L.b.load(count, typ=I64), ir.Constant(I64, 1)), count)
    L.b.branch(header)
    L.b.position_at_end(done)


@lowers(Replay)
def lower_replay(L, node):
    m, c = node.attrs["tapes"], node.attrs["carried"]
    (body,) = node.attrs["bodies"]
    tapes = [L.buffer(v) for v in node.inputs[1:1 + m]]
    seeds, captured = node.inputs[1 + m:1 + m + c], [L.buffer(v) for v in node.inputs[1 + m + c:]]
    _check_layouts(node, seeds, node.outputs)
    _check_layouts(node, body.results, node.outputs)
    adjoints = _define_all(L, node.outputs)
    for v, dst in zip(seeds, adjoints):
        copy(L, v, dst)
    left = L.allocas.alloca(I64)
    L.b.store(L.b.load(L.buffer(node.inputs[0]), typ=I64), left)
    fn = L.b.block.parent
    header, step, done = (fn.append_basic_block(f"replay.{k}") for k in ("cond", "body", "end"))
    L.b.branch(header)
    L.b.position_at_end(header)
    k = L.b.load(left, typ=I64)
    L.b.cbranch(L.b.icmp_signed(">", k, _ZERO), step, done)
    L.b.position_at_end(step)
    L.b.store(L.b.sub(k, ir.Constant(I64, 1)), left)
    popped = [pop(L, tape, entry_bytes(p)) for tape, p in zip(tapes, body.params[:m])]
    given = _into_targets(L, body, body.params[m:m + c], adjoints)
    with _given(L, given), scope(L, body, popped + adjoints + captured):
        for p in body.params[:m]:
            if isinstance(p, Tape):  # a tape of the loop inside: this iteration's, freed with the step
                L.tapes.append(L.buffer(p))
        _assign(L, body.results, adjoints, adjoints)
    L.b.branch(header)
    L.b.position_at_end(done)
