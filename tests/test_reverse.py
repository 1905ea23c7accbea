"""Reverse mode records what each adjoint did (transforms/reverse.py): explain prints from that record."""
import numpy as np

import models
from symbackprop import backends
from symbackprop.frontend.signature import spec_of
from symbackprop.pipeline import stages
from symbackprop.primitives.elementwise import Fill
from symbackprop.primitives.linalg import MatMul
from symbackprop.primitives.shape import Transpose


def _mlp_graph():
    r = np.random.default_rng(0)
    args = dict(W1=r.normal(size=(6, 5)), b1=r.normal(size=5), W2=r.normal(size=(5, 3)), b2=r.normal(size=3),
                x=r.normal(size=(4, 6)), y=np.eye(3)[[0, 1, 2, 0]])
    specs = [spec_of(name, value, i < 4) for i, (name, value) in enumerate(args.items())]
    program = stages.build(models.mlp, specs, backends.get("numpy"), "gradient", wrt=(0, 1, 2, 3))
    return program.graph, program.forward_nodes, program.wrt_values, program.grads


def test_each_backward_node_names_the_adjoint_that_appended_it():
    graph, forward_nodes, wrt_values, grads = _mlp_graph()
    seed = graph.nodes[len(forward_nodes)]  # d_loss = 1, appended by reverse itself
    assert seed.prim is Fill and seed.attrs["value"] == 1.0 and seed not in graph.provenance
    backward = graph.nodes[len(forward_nodes) + 1:]
    assert backward and set(graph.adjoints) <= forward_nodes
    for node in backward:
        step = graph.provenance[node]  # mlp uses no value twice: no sums of contributions, all from adjoints
        assert node in step.nodes and graph.adjoints[step.node] is step
    # the adjoint of x @ W1 sent d_W1 to W1 (input 1) and nothing to x, which is not differentiated
    (first,) = [n for n in graph.nodes if n.prim is MatMul and n.inputs[1] is wrt_values[0]]
    step = graph.adjoints[first]
    assert step.wants == (False, True) and step.results[1] is grads[0]
    assert step.feeds(1)[-1] is grads[0].node and step.feeds(0) == []
    assert [n.prim for n in step.feeds(1)] == [Transpose, MatMul]  # x.T @ g
    assert all(step.inputs_of(n) == (1,) for n in step.nodes)
    assert step.gs[0] is not None and step.gs[0].node not in step.nodes  # read, not appended, by this adjoint

