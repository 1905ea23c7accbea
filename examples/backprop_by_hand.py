"""Backpropagation by hand, next to the code symbackprop generates for it.

The smallest network with two layers: one input x, a hidden unit
a = tanh(w1*x), an output y_hat = w2*a, and the squared error against y.

    x --w1--> a = tanh(w1*x) --w2--> y_hat = w2*a --> L = (y_hat - y)**2

The chain rule, read from the loss back to the weights, multiplies at each
step the gradient that arrives (the residual, dL/d(output of the step)) by the
step's local derivative (d output / d input). Every line of the generated
backward pass is one such product, and the forward values it needs (a, t1 =
y_hat - y) are reused, not recomputed.
"""
import math

import numpy as np

import symbackprop as sb
from _common import progress


def two_layers(w1, w2, x, y):
    a = np.tanh(w1 * x)
    y_hat = w2 * a
    return (y_hat - y) ** 2


#: for each gradient the generated code computes: the chain rule, the residual, the local derivative
CHAIN_RULE = {
    "d_y_hat": ("dL/dy_hat = 2*(y_hat - y)", "dL/dL = 1", "2*(y_hat - y)"),
    "d_w2": ("dL/dw2 = dL/dy_hat * dy_hat/dw2", "dL/dy_hat", "dy_hat/dw2 = a"),
    "d_a": ("dL/da = dL/dy_hat * dy_hat/da", "dL/dy_hat", "dy_hat/da = w2"),
    "d_w1": ("dL/dw1 = dL/da * da/dw1", "dL/da", "da/dw1 = x*(1 - a**2)"),
}


def section(source, title):
    """The lines of the first generated section whose comment starts with `title`, dedented."""
    lines = source.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(f"# {title}"))
    body = []
    for line in lines[start:]:
        if line.strip().startswith("return"):
            break
        body.append(line.strip())
    return body


def function(source, name):
    """The text of the generated function `name`."""
    text = source[source.index(f"def {name}("):]
    return text.split("\n\n\n")[0].rstrip()


def by_hand(w1, w2, x, y):
    """The same gradients, one chain-rule step per line."""
    a = math.tanh(w1 * x)
    y_hat = w2 * a
    d_y_hat = 1.0 * 2 * (y_hat - y)         # residual 1, local 2*(y_hat - y)
    d_w2 = d_y_hat * a                      # residual d_y_hat, local a
    d_a = d_y_hat * w2                      # residual d_y_hat, local w2
    d_w1 = d_a * x * (1 - a**2)             # residual d_a, local x*(1 - a**2): tanh' from the stored a
    return {"a": a, "y_hat": y_hat, "d_y_hat": d_y_hat, "d_w2": d_w2, "d_a": d_a, "d_w1": d_w1}


def main():
    w1, w2, x, y = 0.5, -1.2, 1.5, 0.3
    gradient = sb.value_and_grad(two_layers, wrt=("w1", "w2"))
    loss, (d_w1, d_w2) = gradient(w1, w2, x, y)
    hand = by_hand(w1, w2, x, y)

    print(__doc__.split("\n\n")[1])
    print(f"\nAt w1 = {w1}, w2 = {w2}, x = {x}, y = {y}: a = {hand['a']:.4f}, y_hat = {hand['y_hat']:.4f}, "
          f"L = {loss:.4f}\n")
    print(f"{'generated backward code':34s} {'chain rule':34s} {'residual':12s} x {'local derivative':24s}  value")
    print("-" * 122)
    for line in section(gradient.source, "backward")[1:]:
        line = line.split("#")[0].strip()
        name = line.split("=")[0].strip()
        rule, residual, local = CHAIN_RULE.get(name, ("", "", ""))
        value = f"{hand[name]:+.6f}" if name in hand else ""
        print(f"{line:34s} {rule:34s} {residual:12s} x {local:24s} {value}")
    print(f"\nsymbackprop: dL/dw1 = {d_w1:+.6f}, dL/dw2 = {d_w2:+.6f}   (by hand: {hand['d_w1']:+.6f}, "
          f"{hand['d_w2']:+.6f})")
    assert math.isclose(d_w1, hand["d_w1"], rel_tol=1e-12) and math.isclose(d_w2, hand["d_w2"], rel_tol=1e-12)

    print("(t1 = y_hat - y is kept from the forward pass, and tanh' = 1 - a**2 reads the stored a.)")
    print("\nThe whole generated function (for Python floats it is `math` code):\n")
    print(function(gradient.source, "_value_and_grad_math"))

    # Training: the same gradients and the update w -= lr*dL/dw, in one generated function.
    # train_step updates its parameters in place, so they are 0-d arrays rather than Python floats.
    w1, w2 = np.array(w1), np.array(w2)
    step = sb.train_step(two_layers, sb.optim.SGD(lr=0.1), wrt=("w1", "w2"))
    bar = progress(range(100), "training")
    for i in bar:
        loss = step(w1, w2, x, y)
        bar.set_postfix_str(f"loss {loss:.2e}")
    print(f"\nafter 100 steps of gradient descent: w1 = {w1:.4f}, w2 = {w2:.4f}, "
          f"y_hat = {float(w2 * np.tanh(w1 * x)):.5f} (target {y})")
    print("\nThe update section of the generated training step, written in place:\n")
    print("\n".join(section(step.source, "update")))


if __name__ == "__main__":
    main()
