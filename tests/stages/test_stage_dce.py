"""Dead code: exactly the nodes none of whose outputs reach a result are dropped."""
import sympy

# the package, in one place
from symbackprop.passes import dce
from symbackprop.primitives import elementwise, ops

import stagekit as kit


def test_drops_exactly_the_dead_nodes_in_order():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (3,))
        y = kit.param(g, "y", (3,))
        live_a = ops.unary("exp", x)
        dead_a = ops.unary("sin", y)          # read only by another dead node
        dead_b = dead_a * 2
        live_b = live_a + y
        g.result = ops.sum(live_b)
        ops.unary("cos", g.result)            # reads the result, but nothing reads it
    kept = [live_a.node, live_b.node, g.result.node]
    dce.eliminate_dead_code(g, [g.result])
    assert g.nodes == kept
    assert dead_a.node not in g.nodes and dead_b.node not in g.nodes


def test_a_node_with_one_live_output_is_kept_whole():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (3,))
        used, unused = elementwise.kernel([x], (sympy.exp(kit.a(0)), sympy.log(kit.a(0))), (3,))
        g.result = ops.sum(used)
    dce.eliminate_dead_code(g, [g.result])
    assert used.node in g.nodes and used.node.outputs == [used, unused]


def test_every_result_keeps_its_producers():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (3,))
        grad = ops.unary("cos", x)
        g.result = ops.sum(ops.unary("sin", x))
    nodes = list(g.nodes)
    dce.eliminate_dead_code(g, [g.result, grad])  # a gradient is a result too
    assert g.nodes == nodes
    dce.eliminate_dead_code(g, [g.result])
    assert g.nodes == nodes[1:]


def test_a_dropped_node_is_not_handed_back_by_value_numbering():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (3,))
        dead = ops.unary("exp", x)
        g.result = ops.sum(x)
    dce.eliminate_dead_code(g, [g.result])
    with kit.building(g):
        again = ops.unary("exp", x)
    # the same operation appended after the pass is a new node in the graph, not the dropped one
    assert again is not dead and again.node in g.nodes


def test_replace_uses_rewires_every_reader():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (3,))
        y = kit.param(g, "y", (3,))
        a = ops.unary("exp", x)
        b = a * a
        c = ops.sum(a)
    dce.replace_uses(g, a, y)
    assert b.node.inputs == [y] and c.node.inputs == [y]
    assert a.node.inputs == [x]  # the producer itself is left as it was
