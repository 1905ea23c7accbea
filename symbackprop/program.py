"""A Program: one specialisation of a model as it moves through the pipeline's stages, every field declared.

The stages (pipeline/stages.py) fill its graph and fields; a backend then gives it an Artifact
(backends/base.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .ir import Graph


@dataclass(slots=True)
class Program:
    """The model, its signature and what the stages have made of it so far (slots: no field may be
    bolted on by a module that did not declare it here)."""

    fn: object
    specs: tuple
    backend: object                          # a backends.base.Backend
    kind: str = "value_and_grad"             # "forward" | "gradient" | "value_and_grad" | "train_step"
    wrt: tuple = ()
    single: bool = True
    graph: Graph | None = None
    forward_nodes: set = field(default_factory=set)   # the nodes before reverse mode ran
    wrt_values: list = field(default_factory=list)
    grads: list = field(default_factory=list)
    scalar: bool = False                     # every value a Python float: `math` code
    artifact: object = None                  # a backends.base.Artifact, once a backend built it
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
