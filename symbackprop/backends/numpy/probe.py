"""The forward pass of a program written with probes: what its value-dependent regions did on given arguments.

explain (symbackprop/regions_report.py) asks which branch each `if` took and how many times each
`while` ran. The generated code already holds the answers (an `if`'s predicate, a loop's `trips`
counter); this writes the forward section once more, each numbered region adding one line that hands
its answer to `record`:

    record(0, cond)                             # before the `if`: its predicate
    if cond:                                    # model.py:7
        ...
    trips = 0
    while ...:                                  # model.py:9
        ...
        trips += 1
    record(1, trips)                            # after the loop: its trip count

Compiled functions never contain these lines (a Writer's `probes` is None); the probed function is
built for one explain call, run once, and dropped.
"""
from __future__ import annotations

import numpy as np

from ...ir import bodies
from ...rendering import render
from ..base import load
from .printer import NumpyPrinter
from .regions import Scope
from .writer import write_statements, writing


def probed_forward(program, numbering, record):
    """(function, names): the forward nodes of `program` as a function of its graph's params that calls
    `record(number, value)` for each region in `numbering` (node -> number), then returns the loss.
    `names` are the value names the probed code uses (those of .source, where the forward is the same)."""
    graph = program.graph
    nodes = [n for n in graph.nodes if n in program.forward_nodes]
    params = graph.params
    keep = [graph.result] + list(params)
    with writing(NumpyPrinter, params) as writer:
        writer.probes = dict(numbering)
        inlinable = writer.inlinable_views(nodes, keep) - {v for n in nodes if bodies(n) for v in n.inputs}
        writer.scopes.append(Scope(nodes, keep))
        lines = write_statements(writer, nodes, inlinable)
        ret = writer.arg(graph.result)
        names = dict(writer.names)
    name = program.fn.__name__
    text = render("numpy_function.py.j2", name="forward", params=[p.name for p in params],
                  doc=f"{name}: the forward pass, each region recording its branch or trip count.",
                  errstate=False, indent="    ", sections=[{"title": "forward", "lines": lines}], ret=ret)
    source = render("numpy_module.py.j2", title=f"Probed forward pass of `{name}` (explain).",
                    origin=f"{program.fn.__module__}.{program.fn.__qualname__}", notes=[], uses_math=False,
                    functions=[text.rstrip("\n")])
    return load(source, f"<symbackprop probe {name}>", {"record": record})["forward"], names


def run_probed(program, numbering, arguments):
    """What each numbered region recorded on `arguments` (the program's dynamic arguments, in order):
    number -> list of values (a bool per `if` reached, a trip count per loop run); and the names.
    With `arguments` None, the names only (nothing is run)."""
    records: dict = {k: [] for k in numbering.values()}

    def record(k, value):
        records[k].append(value.item() if isinstance(value, np.generic) else value)

    forward, names = probed_forward(program, numbering, record)
    if arguments is None:
        return records, names
    args = [np.float64(a) if type(a) is float else a for a in arguments]  # NumPy code takes float64 numbers
    with np.errstate(all="ignore"):
        forward(*args)
    return records, names
