"""A Program: one specialisation of a model as it moves through the pipeline's stages, every field declared.

The stages (pipeline/stages.py) fill its graph and fields; a backend then gives it an Artifact
(backends/base.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from .ir import Graph
from .rendering import source_literal


@dataclass(frozen=True)
class Leaf:
    """Where the k-th array of a model's aux output (graph.aux[k]) sits in its tree."""
    index: int


def aux_source(tree, leaves) -> str:
    """The aux tree as Python source: `leaves[k]` (an expression) for each Leaf, numbers as literals."""
    if isinstance(tree, Leaf):
        return leaves[tree.index]
    if isinstance(tree, tuple):
        items = [aux_source(t, leaves) for t in tree]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(tree, list):
        return "[" + ", ".join(aux_source(t, leaves) for t in tree) + "]"
    if isinstance(tree, dict):
        return "{" + ", ".join(f"{source_literal(k)}: {aux_source(v, leaves)}" for k, v in tree.items()) + "}"
    return source_literal(tree)


def aux_rebuild(tree, leaves):
    """The aux tree with `leaves[k]` (a value) for each Leaf."""
    if isinstance(tree, Leaf):
        return leaves[tree.index]
    if isinstance(tree, (tuple, list)):
        return type(tree)(aux_rebuild(t, leaves) for t in tree)
    if isinstance(tree, dict):
        return {k: aux_rebuild(v, leaves) for k, v in tree.items()}
    return tree


def aux_names(program) -> list:
    """A C identifier for each array of aux, in graph.aux order (the first path it appears at)."""
    if program.entry:  # jvp, hvp, ...: the outputs named by what they are
        return _entry_output_names(program)
    names: dict = {}
    for k, name in aux_paths(program.aux_tree):
        if k not in names:
            taken = set(names.values())
            unique, n = name, 1
            while unique in taken:  # keys "a-b" and "a_b" both spell aux_a_b
                unique, n = f"{name}_{n}", n + 1
            names[k] = unique
    return [names[k] for k in range(len(program.graph.aux))]


def _entry_output_names(program) -> list:
    """C names of a derivative entry point's outputs: out and tangent (jvp), out and d_<x> (vjp),
    hvp_<x>, jacobian_<x>, hessian_<x>_<y>; <entry>_<k> where the layout is another."""
    wrt = [program.specs[i].name for i in program.wrt]
    count = program.entry_outputs
    names = {"jvp": ["out", "tangent"], "vjp": ["out"] + [f"d_{x}" for x in wrt],
             "hvp": [f"hvp_{x}" for x in wrt], "jacobian": [f"jacobian_{x}" for x in wrt],
             "hessian": [f"hessian_{x}_{y}" for x in wrt for y in wrt]}.get(program.entry, [])
    if len(names) != count or len(set(names)) != count:
        names = [f"{program.entry}_{k}" for k in range(count)]
    if program.model_aux:  # the model's own aux after them, by its paths
        found = dict(aux_paths(program.aux_tree[1]))
        for k in range(count, len(program.graph.aux)):
            name, n = found[k], 1
            while name in names:
                name, n = f"{found[k]}_{n}", n + 1
            names.append(name)
    return names


def aux_paths(tree, prefix="aux") -> list:
    """(leaf index, C-identifier name) of each array of the tree: aux_0, aux_acc, aux_1_logits."""
    if isinstance(tree, Leaf):
        return [(tree.index, prefix)]
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, (tuple, list)) else ()
    paths = []
    for k, v in items:
        paths += aux_paths(v, f"{prefix}_{re.sub(r'[^0-9A-Za-z_]', '_', str(k))}")
    return paths


@dataclass(slots=True)
class Program:
    """The model, its signature and what the stages have made of it so far (slots: no field may be
    bolted on by a module that did not declare it here)."""

    fn: object
    specs: tuple
    backend: object                          # a backends.base.Backend
    kind: str = "value_and_grad"             # "forward" | "gradient" | "value_and_grad" | "train_step"
    #                                          or a derivative entry point: "jvp" | "vjp" | "jacobian" | "hessian"
    #                                          | "hvp", built by the backend as a forward returning its outputs
    entry: str = ""                          # that entry point ("" for the gradient kinds)
    mode: str = ""                           # a Jacobian's: "forward" or "reverse" (the smaller side)
    wrt: tuple = ()
    single: bool = True
    # parameter trees: per model parameter, its index in specs or its tree of Slots into specs (None: no trees)
    trees: tuple | None = None
    tree_wrt: tuple = ()                     # with trees: the model parameters differentiated (wrt as given)
    tree_single: bool = True                 # with trees: one gradient (not a tuple) for the model's wrt
    graph: Graph | None = None
    forward_nodes: set = field(default_factory=set)   # the nodes before reverse mode ran
    wrt_values: list = field(default_factory=list)
    grads: list = field(default_factory=list)
    scalar: bool = False                     # every value a Python float: `math` code
    artifact: object = None                  # a backends.base.Artifact, once a backend built it
    # has_aux=True: the model returns (loss, aux); its arrays are graph.aux, the rest of the tree is here
    has_aux: bool = False
    aux_tree: object = None                  # the aux tree, each array replaced by its Leaf
    # a derivative entry point's outputs are graph.aux[:entry_outputs]; with the model's own aux
    # (has_aux=True on sb.jvp, ...: model_aux) the tree is (outputs, the model's aux tree)
    entry_outputs: int = 0
    model_aux: bool = False
    model_result: object = None              # the model's result the entry point differentiates (explain)
    traced_forward: set = field(default_factory=set)  # forward_nodes before the tangents joined them (explain)
    # batching (sb.vmap, sb.per_example_grad; transforms/batching.py)
    in_axes: object = 0                      # sb.vmap's in_axes: an int for every array, or one per parameter
    keep_batch_axis: bool = False            # per_example_grad: an example is a slice of size 1 along the axis
    batch_value: bool = False                # the batched loss is an output too (vmap of value_and_grad)
    batch_axes: tuple = ()                   # per spec: the axis mapped over, or None (set when traced)
    batch_size: int = 0
    # memory (transforms/recompute.py)
    memory_budget: int | None = None         # bytes of residuals the backward pass may keep alive
    recompute: object = None                 # the recompute.Schedule applied under the budget, if any
    # train steps (kind "train_step")
    optimizer: object = None                 # the sb.optim.Optimizer
    optimizer_text: str = ""                 # its repr at compilation
    updates: list = field(default_factory=list)        # (target, new value) pairs
    update_nodes: set = field(default_factory=set)
    state: list = field(default_factory=list)          # (input name, wrt parameter name), in order
    step_name: str | None = None                        # the step count's input name
    hyper: list = field(default_factory=list)           # (input name, optimizer attribute), in order
    hyper_dtype: np.dtype | None = None
    hyper_defaults: dict = field(default_factory=dict)  # the optimizer's values at compilation
    buffers: tuple = ()
    core: str = "step"                                  # the generated step function's name
    clip_norm: float | None = None                      # clip to the global norm (its value: the default)
    accumulate: int = 1                                 # gradients of this many calls per update
    phase: str = "update"                               # "update", or "accumulate": add the gradients only
    accumulating: Program | None = None                 # an updating Program's accumulating partner

    def aux_text(self, leaves) -> str:
        """The aux tree as Python source, `leaves[k]` written for graph.aux[k]."""
        return aux_source(self.aux_tree, leaves)

    @property
    def dynamic(self) -> list:
        """Indices of the arguments the generated code takes (static ones were fixed at specialisation)."""
        return [i for i, s in enumerate(self.specs) if s.dynamic]

    @property
    def dynamic_names(self) -> list:
        return [s.name for s in self.specs if s.dynamic]

    # what the backend built, for the callers that only want to run or read it
    @property
    def source(self) -> str:
        return self.artifact.source

    @property
    def call(self):
        return self.artifact.call

    @property
    def run_dynamic(self):
        return self.artifact.run_dynamic
