"""The computational graph of one specialisation as Graphviz DOT: forward and backward passes.

One box per statement of the generated code, labelled with that statement (so
the names match `.source`), inside two clusters: forward and backward. A
value-dependent `if` or `while` is one rounded box labelled with its statement
and, given a run on arguments (regions_report), the branch it took or its trip
count and what its tape stores per iteration. Solid
edges carry values within a pass; dashed red edges are the forward values (and
inputs) the backward pass reuses, the residuals backprop keeps.
"""
from __future__ import annotations

from .backends.numpy import writer as numpy_writer
from .backends.numpy.printer import MathPrinter, NumpyPrinter
from .ir import bodies
from .primitives.control import If, Replay, While
from .primitives.elementwise import Fill

REUSE_STYLE = 'style=dashed, color="#c0392b", fontcolor="#c0392b"'
FORWARD_STYLE = 'color="#2c3e50"'
BACKWARD_STYLE = 'color="#2471a3", fontcolor="#2471a3"'


def statements(compiled):
    """Each node's generated statements (comments dropped) and the names of all values, as in `.source`."""
    graph = compiled.graph
    results = [graph.result] + list(compiled.grads)
    inlinable = numpy_writer.inlinable_views(graph.nodes, results)
    # the same walk as write_function: forward nodes first, then backward, one writer
    ordered = [n for n in graph.nodes if n in compiled.forward_nodes] + \
              [n for n in graph.nodes if n not in compiled.forward_nodes]
    texts = {}
    with numpy_writer.writing(MathPrinter if compiled.scalar else NumpyPrinter, graph.params) as writer:
        for node in ordered:
            lines = numpy_writer.write_statements(writer, [node], inlinable)
            texts[node] = [_strip_comment(line, node.loc) for line in lines]
    for node in ordered:  # views written inline where they are read (W.T): label them with that text
        out = node.outputs[0]
        if not texts[node] and out in writer.inline:
            texts[node] = [writer.inline[out]]
    return texts, writer


def _strip_comment(line, loc):
    if loc is not None and loc.line:
        tail = f"# {loc.short()}"
        if line.endswith(tail):
            return line[: -len(tail)].rstrip()
    return line


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _label(lines, loc=None, limit=60):
    shown = [l if len(l) <= limit else l[: limit - 3] + "..." for l in lines[:6]]
    if len(lines) > 6:
        shown.append(f"... ({len(lines) - 6} more lines)")
    if loc is not None and loc.line:
        shown.append(loc.short())
    # \l ends a left-justified line in DOT
    return '"' + "".join(l.replace("\\", "\\\\").replace('"', '\\"') + "\\l" for l in shown) + '"'


def _is_inline_constant(node):
    return node.prim is Fill and node.outputs[0].shape == ()


def _region_lines(node, lines, regions, forward):
    """A region's box: its `if`/`while`/`for` statement (not its body), then what it is, what its tape
    stores and, given a regions report (explain's run on arguments), the branch taken or the trip count."""
    header = next((l for l in lines if l.startswith(("if ", "while ", "for "))), lines[0] if lines else "")
    shown = [header]
    if not forward:
        shown.append(f"backward of the {node.prim.describe(node) if node.prim is not Replay else 'while'}: "
                     + ("the branch taken, replayed" if node.prim is If else "the iterations, last first"))
        return shown
    site = regions.of(node) if regions is not None else None
    if site is not None:
        shown.append(site.outcome())
        if site.stores():
            shown.append(site.stores())
        for inner in regions.inside(site):  # the regions in its bodies, which have no boxes of their own
            shown.append(f"line {inner.loc.line}: {inner.source}  {inner.outcome()}")
    elif node.prim is While and node.attrs.get("tapes"):
        shown.append(f"tape per iteration: {len(node.attrs['tapes'])} values")
    return shown


def to_dot(compiled, title=None, regions=None) -> str:
    """DOT text for the forward and backward graph of `compiled` (one specialisation); with `regions` (a
    regions_report.Report of a run on arguments), each `if` and `while` box says what it did on them."""
    graph = compiled.graph
    texts, writer = statements(compiled)
    nodes = [n for n in graph.nodes if not _is_inline_constant(n)]
    ids = {n: f"n{i}" for i, n in enumerate(nodes)}
    producer = {}
    for p_index, p in enumerate(graph.params):
        producer[p] = f"p{p_index}"
    for n in nodes:
        for v in n.outputs:
            producer[v] = ids[n]
    results = {graph.result: "value"}
    for spec_index, g in zip(compiled.wrt, compiled.grads):
        results.setdefault(g, f"gradient of {compiled.specs[spec_index].name}")
    forward = [n for n in nodes if n in compiled.forward_nodes]
    backward = [n for n in nodes if n not in compiled.forward_nodes]
    name = title or compiled.fn.__name__
    legend = ("solid: data flow within a pass; dashed red: forward values and inputs "
              "the backward pass reuses; double border: returned")
    out = [f"digraph {_quote(name)} {{",
           f'  graph [rankdir=TB, fontname="Helvetica", labelloc=t, label={_quote(name + chr(10) + legend)}];',
           '  node [shape=box, fontname="Courier", fontsize=10];',
           '  edge [fontname="Courier", fontsize=9];',
           "",
           "  // inputs",
           ]
    for p in graph.params:
        spec = next(s for s in compiled.specs if s.name == p.name)
        out.append(f"  {producer[p]} [shape=ellipse, label={_quote(spec.describe())}];")

    def box(n):
        extra = ", peripheries=2" if any(v in results for v in n.outputs) else ""
        lines = texts.get(n) or [n.prim.describe(n)]
        limit = 60
        if bodies(n):
            lines = _region_lines(n, lines, regions, n in compiled.forward_nodes)
            extra += ", style=rounded"
            limit = 120
        return f"    {ids[n]} [label={_label(lines, n.loc, limit)}{extra}];"

    for cluster, title_, members, style in (("cluster_forward", "forward", forward, FORWARD_STYLE),
                                            ("cluster_backward", "backward", backward, BACKWARD_STYLE)):
        out += ["", f"  subgraph {cluster} {{", f"    graph [label={_quote(title_)}, {style}];"]
        out += [box(n) for n in members]
        out.append("  }")
    out += ["", "  // edges"]
    backward_set = set(backward)
    for n in nodes:
        seen = set()
        for v in n.inputs:
            src = producer.get(v)
            if src is None or v in seen:  # an inline constant, or the same value read twice
                continue
            seen.add(v)
            label = _quote(writer.names.get(v) or writer.inline.get(v) or "")
            source_is_backward = v.node in backward_set
            if n in backward_set and not source_is_backward:
                style = REUSE_STYLE
            elif n in backward_set:
                style = BACKWARD_STYLE
            else:
                style = FORWARD_STYLE
            out.append(f"  {src} -> {ids[n]} [label={label}, {style}];")
    out.append("}")
    return "\n".join(out) + "\n"
