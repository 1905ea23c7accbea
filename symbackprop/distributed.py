"""Data-parallel gradients and training on a Dask cluster (the `distributed` extra; docs/distributed.md).

The data arguments are split along axis 0 into shards that stay on the workers; each call broadcasts the
other arguments (the parameters), every shard's worker runs the exported NumPy module of its shard shape,
and the shard results, weighted so that they add up to the whole batch's loss (`separable`), are summed by
a tree of tasks on the workers. Dask is imported when one of these is first used, never by
`import symbackprop`.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import time

import numpy as np

from . import backends
from .api import GradFunction
from .errors import CompileError
from .frontend.signature import Spec, spec_of
from .passes.separable import Separation, analyse
from .pipeline import stages
from .program import Program
from .training import TrainStep

__all__ = ["separable", "value_and_grad", "train_step"]

# What runs on the workers: pickled by value (its module is not importable there), it needs only NumPy.
_WORKER_SOURCE = '''
import sys
import types


def load(shipped):
    """The exported module (name, source), imported once per worker process."""
    name, source = shipped
    module = sys.modules.get(name)
    if module is None:
        module = types.ModuleType(name)
        exec(compile(source, name + ".py", "exec"), module.__dict__)
        sys.modules[name] = module
    return module


def shard(shipped, entry, others, positions, weight, *chunks):
    """weight * (loss, gradients) of one shard: the data chunks put back at their argument positions."""
    args = list(others)
    for position, chunk in zip(positions, chunks):
        args.insert(position, chunk)
    value, grads = getattr(load(shipped), entry)(*args)
    single = not isinstance(grads, tuple)
    grads = (grads,) if single else grads
    if weight != 1.0:
        value, grads = value * weight, tuple(g * weight for g in grads)
    return value, grads, single


def group(entry, others, positions, shards):
    """The sum of the results of `shards`, (shipped module, weight, chunks) each: the shards of the chunks one
    worker holds, in one task, summed in their order."""
    total = None
    for shipped, weight, chunks in shards:
        part = shard(shipped, entry, others, positions, weight, *chunks)
        total = part if total is None else add(total, part)
    return total


def keep(obj):
    """obj itself: what the client sends (parameters, a module's source) held as a task's result."""
    return obj


def add(a, b):
    """Two results summed: one node of the tree reduction (never in place: a gradient may be a data chunk)."""
    return a[0] + b[0], tuple(x + y for x, y in zip(a[1], b[1])), a[2]
'''
WORKER_FILE = "<symbackprop worker>"


def _worker_namespace() -> dict:
    """The worker functions, defined in a namespace of their own: cloudpickle then sends them by value."""
    namespace = {"__name__": "symbackprop_worker"}
    exec(compile(_WORKER_SOURCE, WORKER_FILE, "exec"), namespace)
    return namespace


_worker = _worker_namespace()

CONNECT_TIMEOUT = 10.0  # seconds to reach a scheduler given by address


def _dask():
    try:
        import dask.array
        import distributed
    except ImportError as e:
        raise ImportError("sb.distributed needs Dask: pip install 'symbackprop[distributed]' "
                          "(the `distributed` extra)") from e
    return dask.array, distributed


# ---- separability --------------------------------------------------------------------------------------

def _spec(name, x, differentiated=False):
    if hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, (np.ndarray, np.generic)):
        return Spec(name, "array", tuple(int(s) for s in x.shape), np.dtype(x.dtype))  # a Dask array
    return spec_of(name, x, differentiated)


def _data_names(params, wrt, data, args):
    if data is None:
        return tuple(p for p, a in zip(params, args) if p not in wrt and np.ndim(a) > 0 and hasattr(a, "shape"))
    names = (data,) if isinstance(data, str) else tuple(data)
    for d in names:
        if d not in params:
            raise ValueError(f"data names `{d}`, which is not a parameter of the model ({', '.join(params)})")
        if d in wrt:
            raise ValueError(f"`{d}` is both differentiated (wrt) and data; data are split, parameters are not")
    return names


def _flat_positions(specialiser, params, data):
    """Each data argument's index among the flattened arguments (parameter trees: their leaves)."""
    positions = []
    for d in data:
        i = params.index(d)
        p = i if specialiser.trees is None else specialiser.trees[i]
        if not isinstance(p, int):
            raise ValueError(f"data argument `{d}` is a tree; data are arrays split along axis 0 (the parameters "
                             "may be trees)")
        positions.append(p)
    return positions


def _separation(specialiser, flat, positions) -> Separation:
    """The separation of the model's loss over the rows of the flattened arguments at `positions`."""
    specs = tuple(_spec(p, a, i in specialiser.differentiated)
                  for i, (p, a) in enumerate(zip(specialiser.params, flat)))
    program = Program(specialiser.fn, specs, backends.get("numpy"), "forward", trees=specialiser.trees)
    stages.trace_model(program)
    return analyse(program.graph, {specialiser.params[i] for i in positions})


def separable(f, *args, data=None, wrt=None, **kwargs) -> Separation:
    """Prove that `f`'s loss is a sum or mean over axis 0 of per-row terms of the `data` arguments (default:
    every array not in `wrt`); CompileError naming the model line that mixes rows otherwise."""
    grad = GradFunction(f, wrt)
    args = grad.specialiser.arguments(args, kwargs)
    wrt_names = tuple(grad.params[i] for i in grad.wrt)
    data = _data_names(grad.params, wrt_names, data, args)
    specialiser, flat = grad.specialiser.flat(args)
    return _separation(specialiser, flat, _flat_positions(specialiser, grad.params, data))


# ---- the cluster ---------------------------------------------------------------------------------------

def _connect(client, timeout):
    _, distributed = _dask()
    if isinstance(client, distributed.Client):
        return client, None
    if client is None:
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        return distributed.Client(cluster), cluster
    if isinstance(client, str):
        try:
            return distributed.Client(client, timeout=timeout), None
        except (OSError, TimeoutError) as e:
            raise ConnectionError(f"could not reach the Dask scheduler at {client!r} within {timeout:g} s "
                                  f"({type(e).__name__}); start one with `dask scheduler` or pass client=None "
                                  "for a LocalCluster") from None
    raise TypeError(f"client is a distributed.Client, a scheduler address such as 'tcp://host:8786', or None "
                    f"(a LocalCluster); got {type(client).__name__}")


def _ship(client, obj):
    """`obj` on the cluster as a task's result: workers fetch it from each other, and Dask recomputes it
    from the task (held by the scheduler) when the worker holding it is lost."""
    return client.submit(_worker["keep"], obj, pure=False)


class DistributedValueAndGrad:
    """`sb.value_and_grad(f, wrt)` over data split along axis 0 across a Dask cluster."""

    def __init__(self, fn, wrt=None, client=None, data=None, timeout=CONNECT_TIMEOUT):
        self.local = GradFunction(fn, wrt)
        self.fn, self.params, self.single = fn, self.local.params, self.local.single
        self.wrt = tuple(self.params[i] for i in self.local.wrt)  # by name
        self.data = data
        self.client, self._cluster = _connect(client, timeout)
        self._shards = None
        self.bytes_per_step = None
        self.separation = None

    # ---- shards: made once per data ------------------------------------------------------------------
    def _split(self, arrays):
        da, _ = _dask()
        client = self.client
        if not any(isinstance(a, da.Array) for a in arrays):  # NumPy data: one shard per worker
            n_shards = max(len(client.scheduler_info()["workers"]), 1)
            bounds = np.linspace(0, len(arrays[0]), n_shards + 1).astype(int)
            rows = tuple(int(n) for n in np.diff(bounds) if n > 0)
        else:
            rows = next(a for a in arrays if isinstance(a, da.Array)).chunks[0]
        # the data as Dask arrays sharing the row chunks: a lost worker's shards are recomputed from the graph
        arrays = [a if isinstance(a, da.Array) else da.from_array(np.asarray(a), chunks=(rows,) + a.shape[1:])
                  for a in arrays]
        arrays = [a.rechunk((rows,) + tuple((s,) for s in a.shape[1:])) for a in arrays]
        arrays = client.persist(arrays)
        blocks = [a.to_delayed().reshape(-1) for a in arrays]
        futures = [client.compute(list(b)) for b in blocks]
        chunks = [[futures[j][i] for j in range(len(arrays))] for i in range(len(rows))]
        shapes = [tuple((rows[i],) + a.shape[1:] for a in arrays) for i in range(len(rows))]
        self._persisted = arrays
        return chunks, shapes

    def _setup(self, args, specialiser, flat, data, positions, key):
        whole = _separation(specialiser, flat, positions)
        chunks, shapes = self._split([flat[i] for i in positions])
        at = [self.params.index(d) for d in data]  # the data among the model's own arguments
        modules, weights = {}, []
        for shape in shapes:
            if shape not in modules:
                shard_args, shard_flat = list(args), list(flat)
                for i, j, s in zip(at, positions, shape):
                    shard_args[i] = shard_flat[j] = np.broadcast_to(np.zeros((), np.dtype(flat[j].dtype)), s)
                part = _separation(specialiser, shard_flat, positions)
                source = self._export(shard_args)
                name = "symbackprop_shard_" + hashlib.sha1(source.encode()).hexdigest()[:16]
                modules[shape] = (_ship(self.client, (name, source)), part)
            weights.append(whole.scale / modules[shape][1].scale)
        if whole.offset and abs(sum(weights) - 1.0) > 1e-12:
            raise CompileError(
                "the loss adds a term free of the data to a sum over the rows: each shard would add it again",
                None,
                "Use a mean over the rows (np.mean) or move the data-free term out of the model.")
        self.separation = whole
        # the exported module of a tree specialisation takes the tree's leaves in `value_and_grad_leaves`
        entry = "value_and_grad" if specialiser.trees is None else "value_and_grad_leaves"
        self._shards = dict(key=key, positions=positions, chunks=chunks, shapes=shapes, modules=modules,
                            weights=weights, entry=entry, placed=None, groups=None)

    def _group(self, sh, workers):
        """The shards grouped by the worker holding their chunks: one task per worker per step, summing its
        shards there (few tasks however many chunks). Done again when the workers change (one lost, one
        added); a chunk being recomputed goes to the smallest group, and any group runs wherever Dask puts it
        (a chunk elsewhere is fetched): placement is only for speed, never for the numbers' correctness."""
        _, distributed = _dask()
        chunks = sh["chunks"]
        distributed.wait([c for chunk in chunks for c in chunk])
        who = self.client.who_has([c for chunk in chunks for c in chunk])
        by_worker = {}
        for i, chunk in enumerate(chunks):
            held = {}
            for c, a, shape in zip(chunk, self._persisted, sh["shapes"][i]):
                for w in who.get(c.key, ()):  # the worker holding most of the shard's bytes
                    held[w] = held.get(w, 0) + int(np.prod(shape)) * a.dtype.itemsize
            by_worker.setdefault(max(held, key=held.get) if held else None, []).append(i)
        homeless = by_worker.pop(None, [])
        groups = sorted(by_worker.values())
        for i in homeless:
            if not groups:
                groups.append([])
            min(groups, key=len).append(i)
        sh["groups"] = [sorted(g) for g in groups if g]
        sh["placed"] = workers

    def _export(self, shard_args):
        program = self.local.specialise(*shard_args)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "shard.py")
            self.local.specialiser.export(path, program)
            with open(path) as f:
                return f.read()

    # ---- a call --------------------------------------------------------------------------------------
    def leaves(self, *args, **kwargs):
        """(specialiser, flattened arguments, loss, gradients of the specialiser's wrt leaves) of one call."""
        args = self.local.specialiser.arguments(args, kwargs)
        data = tuple(sorted(_data_names(self.params, self.wrt, self.data, args), key=self.params.index))
        if not data:
            raise ValueError("no data arguments: name the arrays split along axis 0 with data=...")
        specialiser, flat = self.local.specialiser.flat(args)
        positions = _flat_positions(specialiser, self.params, data)
        others = tuple(a for i, a in enumerate(flat) if i not in positions)
        # the data by identity (held here, so that no other array takes their ids), the rest by signature
        key = (specialiser, tuple(flat[i] for i in positions), specialiser.key(others))
        sh = self._shards
        if sh is None or sh["key"][0] is not key[0] or sh["key"][2] != key[2] \
                or any(a is not b for a, b in zip(sh["key"][1], key[1])):
            self._setup(args, specialiser, flat, data, positions, key)
            sh = self._shards
        client = self.client
        workers = set(client.scheduler_info()["workers"])
        if sh["placed"] != workers:
            self._group(sh, workers)
        shipped = _ship(client, others)
        parts = [client.submit(_worker["group"], sh["entry"], shipped, sh["positions"],
                               [(sh["modules"][sh["shapes"][i]][0], sh["weights"][i], sh["chunks"][i]) for i in g],
                               pure=False)
                 for g in sh["groups"]]
        while len(parts) > 1:  # the tree reduction, on the workers
            parts = [client.submit(_worker["add"], a, b, pure=False) for a, b in zip(parts[::2], parts[1::2])] \
                + parts[len(parts) // 2 * 2:]
        value, grads, _ = parts[0].result()
        grad_bytes = sum(np.asarray(g).nbytes for g in grads)
        self.bytes_per_step = {
            # to each worker running a group; a gradient crosses once per group at most (the last to the client)
            "parameters": sum(np.asarray(a).nbytes for a in others if hasattr(a, "nbytes")) * len(sh["groups"]),
            "gradients": grad_bytes * len(sh["groups"]),
        }
        return specialiser, flat, value, grads

    def __call__(self, *args, **kwargs):
        specialiser, _, value, grads = self.leaves(*args, **kwargs)
        if specialiser.trees is not None:
            return value, specialiser.gradient_tree(grads)
        return value, grads[0] if self.single else grads

    def close(self):
        """Close the client and the LocalCluster this object started (a given client is left open)."""
        if self._cluster is not None:
            self.client.close()
            self._cluster.close()
            self._cluster = None


def value_and_grad(f=None, wrt=None, client=None, data=None, timeout=CONNECT_TIMEOUT):
    """A callable like `sb.value_and_grad(f, wrt)` whose `data` arguments are split across a Dask cluster."""
    if f is None:
        return lambda fn: DistributedValueAndGrad(fn, wrt, client, data, timeout)
    return DistributedValueAndGrad(f, wrt, client, data, timeout)


# ---- training ------------------------------------------------------------------------------------------

_APPLY = '''import numpy as np


def apply_gradients({params}, {grads}):
    """A loss whose gradient with respect to each parameter is the given gradient: the optimizer's update."""
    return {terms}
'''


def _update_step(names, optimizer, clip_norm):
    """sb.train_step of a model whose gradient is the distributed one: the update, compiled, on the client."""
    taken, grads = set(names), []
    for n in names:  # each gradient's name, apart from every parameter's
        g = f"g_{n}"
        while g in taken:
            g += "_"
        taken.add(g)
        grads.append(g)
    source = _APPLY.format(params=", ".join(names), grads=", ".join(grads),
                           terms=" + ".join(f"np.sum({n} * {g})" for n, g in zip(names, grads)))
    name = "symbackprop_apply_" + hashlib.sha1(source.encode()).hexdigest()[:16]
    folder = os.path.join(tempfile.gettempdir(), "symbackprop-distributed")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name + ".py")
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write(source)
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return TrainStep(module.apply_gradients, optimizer, wrt=tuple(names), clip_norm=clip_norm)


class DistributedTrainStep:
    """`sb.train_step(f, optimizer, wrt)` with the gradient from the cluster and the update on the client.

    The update is a train step over the differentiated arrays (a parameter tree's leaves, named by path as in
    docs/trees.md), one per tree structure; `.state` and `.steps` are those of the last structure stepped."""

    def __init__(self, fn, optimizer, wrt=None, client=None, data=None, clip_norm=None,
                 timeout=CONNECT_TIMEOUT):
        self.grad = DistributedValueAndGrad(fn, wrt, client, data, timeout)
        self.client = self.grad.client
        self.optimizer = optimizer
        self.clip_norm = clip_norm
        self._updates = {}   # leaf names -> the TrainStep updating them
        self.update = None

    @property
    def state(self):
        return {} if self.update is None else self.update.state

    @property
    def steps(self):
        return 0 if self.update is None else self.update.steps

    @property
    def bytes_per_step(self):
        return self.grad.bytes_per_step

    def __call__(self, *args, **kwargs):
        specialiser, flat, value, grads = self.grad.leaves(*args, **kwargs)
        names = tuple(specialiser.params[i] for i in specialiser.wrt)
        params = [flat[i] for i in specialiser.wrt]
        for n, p in zip(names, params):
            if not isinstance(p, np.ndarray) or not p.flags.writeable:
                what = "a read-only array" if isinstance(p, np.ndarray) else f"a {type(p).__name__}"
                raise TypeError(f"`{n}` is {what}: it must be a writeable NumPy array to be updated in place "
                                "(a float: pass a 0-d array, np.array(value))")
        update = self._updates.get(names)
        if update is None:
            update = self._updates[names] = _update_step(list(names), self.optimizer, self.clip_norm)
        self.update = update
        update(*params, *grads)
        return value

    def run(self, *args, steps, progress=True, **kwargs):
        """`steps` steps on the same arguments, with a progress bar (tqdm when installed); the losses."""
        losses = []
        bar = _progress(steps) if progress else None
        for _ in range(steps):
            losses.append(float(self(*args, **kwargs)))
            if bar is not None:
                bar(losses[-1])
        if bar is not None:
            bar(None)
        return losses

    def reset(self):
        for update in self._updates.values():
            update.reset()

    def close(self):
        self.grad.close()


def _progress(total):
    """A callback drawing the steps done and the last loss: tqdm when installed, else one line on stderr."""
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        bar = tqdm(total=total, desc="distributed steps", mininterval=0.2)

        def tick(loss):
            if loss is None:
                bar.close()
            else:
                bar.update(1)
                bar.set_postfix_str(f"loss {loss:.4g}")
        return tick
    done, shown, start = [0], [0.0], time.perf_counter()

    def tick(loss):
        if loss is None:
            sys.stderr.write("\n")
            return
        done[0] += 1
        now = time.perf_counter()
        if now - shown[0] > 0.2 or done[0] == total:
            shown[0] = now
            sys.stderr.write(f"\rdistributed steps {done[0]}/{total} {now - start:5.1f}s loss {loss:.4g}")
            sys.stderr.flush()
    return tick


def train_step(f=None, optimizer=None, wrt=None, client=None, data=None, clip_norm=None,
               timeout=CONNECT_TIMEOUT):
    """A callable like `sb.train_step(f, optimizer, wrt)` whose gradient comes from a Dask cluster."""
    if optimizer is None:
        raise TypeError("sb.distributed.train_step needs an optimizer, e.g. sb.optim.Adam(lr=1e-3)")
    if f is None:
        return lambda fn: DistributedTrainStep(fn, optimizer, wrt, client, data, clip_norm, timeout)
    return DistributedTrainStep(f, optimizer, wrt, client, data, clip_norm, timeout)
