"""The digits MLP trained data-parallel on a Dask LocalCluster that this example starts itself.

The 1437 training images are split into 4 uneven row chunks held by 2 worker processes; every step
ships the parameters, each worker runs the exported NumPy gradient of its chunks, the gradients are
summed on the workers and Adam updates the parameters here, in place. Full-batch training: the same
numbers as sb.train_step on the whole training set in one process. Needs the `distributed` extra and
scikit-learn (the `examples` extra, which also gives the tqdm progress bar).
"""
import numpy as np
import dask.array as da
from distributed import Client, LocalCluster

import symbackprop as sb
from digits_mlp import cross_entropy, logits, split


def main(steps=300, hidden=64, seed=0):
    x_train, l_train, x_test, l_test = split(seed)
    x_train = x_train.astype(np.float64)
    y_train = np.eye(10)[l_train]
    rng = np.random.default_rng(seed)
    W1 = rng.normal(size=(64, hidden)) / 8
    b1 = np.zeros(hidden)
    W2 = rng.normal(size=(hidden, 10)) / np.sqrt(hidden)
    b2 = np.zeros(10)

    chunks = (400, 300, 438, 300)  # uneven on purpose: one exported module per chunk shape
    x = da.from_array(x_train, chunks=(chunks, 64))
    y = da.from_array(y_train, chunks=(chunks, 10))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as client:
        print(sb.distributed.separable(cross_entropy, W1, b1, W2, b2, x, y, wrt=("W1", "b1", "W2", "b2")))
        step = sb.distributed.train_step(cross_entropy, sb.optim.Adam(lr=1e-2), wrt=("W1", "b1", "W2", "b2"),
                                         client=client)
        losses = step.run(W1, b1, W2, b2, x, y, steps=steps)
        moved = step.bytes_per_step
    predicted = np.argmax(logits(W1, b1, W2, b2, x_test.astype(np.float64)), axis=1)
    accuracy = np.mean(predicted == l_test)
    print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f} in {steps} full-batch steps on 2 workers; "
          f"test accuracy {accuracy:.4f}; per step {moved['parameters']} B of parameters out, "
          f"<= {moved['gradients']} B of gradients back")
    assert accuracy >= 0.9, "the MLP should reach 90% test accuracy"
    return accuracy


if __name__ == "__main__":
    main()
