"""sb.train_step: the loss, its gradients and the optimizer's update in one generated function.

The Program is value_and_grad's up to reverse mode; then the optimizer's update
rules are appended as kernels (transforms/update.py) and the backend writes each
update into its target in place (`W1 -= lr*d_W1`). Optimizer state and the
hyperparameters are inputs of the generated function, so a new learning rate
(or a schedule's next value, evaluated here before each update) needs no
recompilation. With `accumulate=k` a specialisation is two Programs: the first
k - 1 calls run the one that adds the gradients into buffers, the k-th the one
that updates. The cache, compilation and export are the Specialiser's, as for
sb.grad. A TrainStep pickles as its model (by reference), options and state.
"""
from __future__ import annotations

import functools
import numbers

import numpy as np

from . import dtypes
from .optim import Optimizer
from .pipeline.pickling import model_reference
from .pipeline.specialiser import Specialiser
from .program import Program
from .transforms.recompute import parse_budget

#: the state entry counting the gradients summed in the buffers since the last update (accumulate > 1)
ACCUMULATED = "accumulated"


class TrainStep:
    """One optimizer step on a model's loss; call it like the model: it updates `wrt` in place, returns the loss."""

    __symbackprop__ = True

    def __init__(self, fn, optimizer, wrt=None, backend="numpy", clip_norm=None, accumulate=1, has_aux=False,
                 memory_budget=None):
        if not callable(fn) or not hasattr(fn, "__code__"):
            raise TypeError(f"expected a Python function, got {type(fn).__name__}")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"train_step needs an optimizer from sb.optim (SGD, RMSProp, Adam, AdamW), "
                            f"got {optimizer!r}")
        if isinstance(accumulate, bool) or not isinstance(accumulate, numbers.Integral) or accumulate < 1:
            raise ValueError(f"accumulate must be a whole number >= 1 (the calls per update), got {accumulate!r}")
        _check_clip_norm(clip_norm)
        if not isinstance(has_aux, bool):
            raise TypeError(f"has_aux is True or False, got {has_aux!r}")
        self._accumulate = int(accumulate)
        #: the model returns (loss, aux) and each call returns them (aux never differentiated)
        self.has_aux = has_aux
        self.memory_budget = parse_budget(memory_budget)
        fields = {"optimizer": optimizer, "clip_norm": clip_norm, "accumulate": self._accumulate, "has_aux": has_aux}
        if self.memory_budget is not None:
            fields["memory_budget"] = self.memory_budget
        self.specialiser = Specialiser(fn, "train_step", backend, wrt, fields=fields)
        self.specialiser.single = False
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.optimizer = optimizer
        self.backend = self.specialiser.backend.name
        self.params = self.specialiser.params
        self.wrt = self.specialiser.wrt
        #: the optimizer state by input name (`m_W1`, `t`, `acc_W1`, ...): zeros made on first use, updated
        #: in place; with accumulate > 1 also "accumulated", the gradients summed since the last update
        self.state: dict = {}
        #: updates applied so far; a schedule's lr is evaluated at steps + 1
        self.steps = 0
        self._checked_ids = None

    @property
    def clip_norm(self):
        """The global norm gradients are clipped to (None: no clipping); a runtime input of the step."""
        return self.specialiser.fields["clip_norm"]

    @clip_norm.setter
    def clip_norm(self, value):
        # between two numbers nothing recompiles; None <-> a number changes the code (the cache key)
        _check_clip_norm(value)
        self.specialiser.fields["clip_norm"] = value

    @property
    def accumulate(self) -> int:
        """How many calls' gradients make one update (fixed when the step is made)."""
        return self._accumulate

    @property
    def compilations(self) -> int:
        return self.specialiser.compilations

    @property
    def _last(self) -> Program | None:
        return self.specialiser.last

    # ---- calling ---------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        s, args = self.specialiser.flat(self.specialiser.arguments(args, kwargs))  # trees: their leaves
        self._check_updatable(args, s)
        entry = self._entry(args, s)
        accumulated = self.state.get(ACCUMULATED, 0)
        if entry.accumulating is not None and accumulated < self._accumulate - 1:
            part = entry.accumulating
            loss = part.call(*[args[i] for i in part.dynamic], *self._state_arrays(part, args, s))
            self.state[ACCUMULATED] = accumulated + 1
            return loss
        hyper = self._hyperparameters(entry)  # before the call: a schedule that raises changes nothing
        loss = entry.call(*[args[i] for i in entry.dynamic], *self._state_arrays(entry, args, s), *hyper)
        self.steps += 1
        if entry.accumulating is not None:
            self.state[ACCUMULATED] = 0
        return loss

    def _entry(self, args, s=None) -> Program:
        """The specialisation for `args` (flattened by specialiser `s`) and the optimizer's current structure,
        compiled on a miss."""
        s = s or self.specialiser
        prefix = (self.optimizer.structure(), self.clip_norm is not None, self._accumulate)
        return s.lookup(s.key(args, prefix=prefix), args)

    def _check_updatable(self, args, s):
        ids = tuple(id(args[i]) for i in s.wrt)
        if ids == self._checked_ids:
            return
        for i in s.wrt:
            name, x = s.params[i], args[i]
            if isinstance(x, np.ndarray):
                if dtypes.is_half(x.dtype):
                    raise TypeError(f"train_step does not update {x.dtype} parameters (`{name}`): 16-bit optimizer "
                                    f"state underflows; keep float32 master weights and pass compute_dtype="
                                    f"{x.dtype.name!r} to run the forward and backward passes in {x.dtype}")
                if not x.flags.writeable:
                    raise ValueError(f"train_step cannot update `{name}` in place: the array is read-only; "
                                     f"pass a writeable copy ({name}.copy())")
            elif isinstance(x, (float, int, np.generic)) and not isinstance(x, (bool, np.bool_)):
                raise TypeError(f"train_step updates `{name}` in place, but a {type(x).__name__} cannot be "
                                f"changed in place: pass a 0-d array (np.array({x!r})) or a 1-element array "
                                f"(np.array([{x!r}])) and read it back with {name}.item()")
            # anything else gets spec_of's TypeError when the signature is built
        arrays = [(s.params[i], args[i]) for i in s.wrt if isinstance(args[i], np.ndarray)]
        for k, (a, x) in enumerate(arrays):
            for b, y in arrays[k + 1:]:
                if np.may_share_memory(x, y) and np.shares_memory(x, y):
                    raise ValueError(f"`{a}` and `{b}` share memory; train_step updates each parameter in place, "
                                     "so each must be an array of its own")
        self._checked_ids = ids

    def _state_arrays(self, entry, args, s):
        """The state inputs of `entry`, made as zeros on first use (float32 for float32 parameters)."""
        arrays = []
        for name, param in entry.state:
            p = args[s.params.index(param)]
            arrays.append(self._state_array(name, p.shape, p.dtype))
        if entry.step_name:
            arrays.append(self._state_array(entry.step_name, (), entry.hyper_dtype))
        return arrays

    def _state_array(self, name, shape, dtype):
        array = self.state.get(name)
        if array is None:
            array = self.state[name] = np.zeros(shape, dtype)
        elif array.shape != shape or array.dtype != dtype:
            raise ValueError(f"optimizer state `{name}` was made for {array.dtype}{list(array.shape)}, "
                             f"not {np.dtype(dtype)}{list(shape)}; call .reset() to start again")
        return array

    def _hyperparameters(self, entry):
        """The runtime scalar inputs of this update: the optimizer's (schedules evaluated), then clip_norm."""
        values = self.optimizer.values(self.steps + 1)
        values["clip_norm"] = self.clip_norm
        scalar = entry.hyper_dtype.type
        return [scalar(values[attr]) for _, attr in entry.hyper]

    def reset(self):
        """Forget the optimizer state: the next call starts again from zeros (t = 0, no gradient summed)."""
        self.state.clear()
        self.steps = 0

    # ---- pickling --------------------------------------------------------------
    def __reduce__(self):
        """The model by reference, the optimizer, the options and the state; compiled again on first call."""
        options = {"wrt": self.wrt, "backend": self.backend, "clip_norm": self.clip_norm,
                   "accumulate": self._accumulate, "has_aux": self.has_aux, "memory_budget": self.memory_budget}
        return _restore, (model_reference(self.fn), self.optimizer, options, self.state, self.steps)

    # ---- inspection and export -------------------------------------------------
    def specialise(self, *args, **kwargs) -> Program:
        """Compile (or fetch) the step for these arguments without running it."""
        s, args = self.specialiser.flat(self.specialiser.arguments(args, kwargs))
        return self._entry(args, s)

    def memory(self, *args, **kwargs):
        """The memory report of the step for `args` (default: the last specialisation)."""
        compiled = self.specialise(*args, **kwargs) if (args or kwargs) else self._last
        if compiled is None:
            raise RuntimeError("no specialisation yet: pass example arguments, or call the step first")
        return self.specialiser.memory(compiled)

    @property
    def source(self) -> str:
        """The generated module of the last specialisation."""
        if self._last is None:
            raise RuntimeError(f"the train step of {self.fn.__name__} has not been called yet: call it "
                               "(or .specialise(...)) with example arguments first")
        return self._last.source

    def export(self, path, *args, **kwargs):
        """Write the step for `args` (default: the last one) as a standalone .py, .ll or .so."""
        compiled = self.specialise(*args, **kwargs) if (args or kwargs) else self._last
        if compiled is None:
            raise RuntimeError("nothing to export yet: pass example arguments, or call the step first")
        return self.specialiser.export(path, compiled)

    def __repr__(self):
        options = "".join(f", {name}={value!r}" for name, value, default in
                          (("clip_norm", self.clip_norm, None), ("accumulate", self._accumulate, 1),
                           ("has_aux", self.has_aux, False))
                          if value is not default and value != default)
        return (f"<symbackprop train_step of {self.fn.__name__} wrt {[self.params[i] for i in self.wrt]} "
                f"with {self.optimizer!r}{options}>")


def _check_clip_norm(value):
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"clip_norm must be a number > 0 (the largest global gradient norm) or None, "
                         f"got {value!r}")


def _restore(fn, optimizer, options, state, steps):
    step = TrainStep(fn, optimizer, **options)
    step.state.update(state)
    step.steps = steps
    return step


# ---- mixed precision: compute_dtype="bfloat16" | "float16" -------------------------------------------

#: the loss scale a float16 step starts at: the largest power of two a float16 holds (the scaled loss's
#: gradient seeds the backward pass as a float16)
INIT_SCALE = 2.0 ** 15
#: good (finite) steps in a row after which the scale doubles, up to INIT_SCALE (torch.amp's default)
GROWTH_INTERVAL = 2000
#: the smallest scale halving goes down to
MIN_SCALE = 2.0 ** -24

COMPUTE_DTYPES = ("float32", "bfloat16", "float16")


def _linear_in_params(params, grads):
    """sum_k <params[k], grads[k]>: its gradient with respect to params is grads, so a train step of it applies
    the optimizer's update (weight decay, clipping, accumulation, schedules) for the gradients given."""
    total = 0.0
    for p, g in zip(params, grads):
        total = total + np.sum(p * g)
    return total


class MixedPrecisionStep:
    """A train step whose forward and backward passes run in a 16-bit compute dtype on copies of float32
    master parameters, which the optimizer updates in place; with float16, dynamic loss scaling.

    Each call casts the float arrays among the arguments to the compute dtype, runs the model's vjp seeded
    with the loss scale (float16) or 1 (bfloat16), unscales the 16-bit gradients in float32 and, when they
    are all finite, applies the optimizer to the master parameters (a compiled train step of
    `_linear_in_params`, so clipping, accumulation, weight decay and schedules are the ones of every step).
    On inf or NaN (float16) the step is skipped and the scale halved; after GROWTH_INTERVAL good steps in a
    row it doubles, up to INIT_SCALE.
    """

    __symbackprop__ = True

    def __init__(self, fn, optimizer, compute_dtype, wrt=None, backend="numpy", clip_norm=None, accumulate=1):
        self.compute_dtype = dtypes.named(compute_dtype)
        self.gradient = Specialiser(fn, "vjp", backend, wrt)
        self.update = TrainStep(_linear_in_params, optimizer, wrt="params", backend=backend, clip_norm=clip_norm,
                                accumulate=accumulate)
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.optimizer = optimizer
        self.backend = self.gradient.backend.name
        self.params = self.gradient.params
        self.wrt = self.gradient.wrt
        #: whether the loss is scaled (float16); bfloat16 has float32's range and is never scaled
        self.scaling = self.compute_dtype == np.float16
        #: the current loss scale (1.0 without scaling)
        self.loss_scale = INIT_SCALE if self.scaling else 1.0
        #: consecutive good steps since the scale last changed, the number after which it doubles
        self.good_steps = 0
        self.growth_interval = GROWTH_INTERVAL
        #: whether the last call skipped its update (a gradient with inf or NaN), and how many calls did
        self.skipped = False
        self.skipped_steps = 0
        self._inject = 0

    # the optimizer's state and step count are the update step's
    @property
    def state(self) -> dict:
        return self.update.state

    @property
    def steps(self) -> int:
        return self.update.steps

    @property
    def accumulate(self) -> int:
        return self.update.accumulate

    @property
    def clip_norm(self):
        return self.update.clip_norm

    @clip_norm.setter
    def clip_norm(self, value):
        self.update.clip_norm = value

    @property
    def compilations(self) -> int:
        return self.gradient.compilations + self.update.compilations

    def inject_overflow(self, calls=1):
        """Test hook: the next `calls` calls seed the backward pass with inf, as if the scaled loss had
        overflowed float16 (the step is skipped and the scale halved, as for a real overflow)."""
        self._inject += int(calls)

    def __call__(self, *args, **kwargs):
        g = self.gradient
        args = g.arguments(args, kwargs)
        masters = []
        for i in g.wrt:
            x = args[i]
            if not (isinstance(x, np.ndarray) and x.dtype == np.float32):
                what = f"{x.dtype} array" if isinstance(x, np.ndarray) else type(x).__name__
                raise TypeError(f"train_step with compute_dtype={self.compute_dtype.name!r} updates float32 master "
                                f"parameters; `{g.params[i]}` is a {what} (pass {g.params[i]}.astype(np.float32))")
            masters.append(x)
        low = tuple(_in_dtype(a, self.compute_dtype) for a in args)
        program = g.lookup(g.key(low), low)
        scale = self.loss_scale
        if self._inject:
            self._inject -= 1
            scale = np.inf
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow of the scaled gradients is looked for below
            _, outs = program.call(*low, self.compute_dtype.type(scale))
        loss, grads = outs[0], outs[1:]
        unscaled = [np.asarray(d, np.float32) / np.float32(scale) if scale != 1.0 else np.asarray(d, np.float32)
                    for d in grads]
        if self.scaling and not all(np.isfinite(d).all() for d in unscaled):
            self.skipped = True
            self.skipped_steps += 1
            self.loss_scale = max(self.loss_scale / 2, MIN_SCALE)
            self.good_steps = 0
            return loss
        self.skipped = False
        self.update(tuple(masters), tuple(unscaled))
        if self.scaling:
            self.good_steps += 1
            if self.good_steps >= self.growth_interval:
                self.loss_scale = min(self.loss_scale * 2, INIT_SCALE)
                self.good_steps = 0
        return loss

    def reset(self):
        """Forget the optimizer state and the loss scale's history."""
        self.update.reset()
        self.loss_scale = INIT_SCALE if self.scaling else 1.0
        self.good_steps = self.skipped_steps = 0
        self.skipped = False

    @property
    def source(self) -> str:
        """The generated gradient code (the model's vjp in the compute dtype) of the last call."""
        if self.gradient.last is None:
            raise RuntimeError(f"the train step of {self.fn.__name__} has not been called yet")
        return self.gradient.last.source

    def __reduce__(self):
        wrt = self.wrt[0] if self.gradient.single else self.wrt
        options = {"wrt": wrt, "backend": self.backend, "clip_norm": self.clip_norm,
                   "accumulate": self.accumulate, "compute_dtype": self.compute_dtype.name}
        scaler = (self.loss_scale, self.good_steps, self.skipped, self.skipped_steps, self.growth_interval)
        return _restore_mixed, (model_reference(self.fn), self.optimizer, options, self.state, self.steps, scaler)

    def __repr__(self):
        return (f"<symbackprop train_step of {self.fn.__name__} wrt {[self.params[i] for i in self.wrt]} with "
                f"{self.optimizer!r}, compute_dtype={self.compute_dtype.name!r}, loss_scale={self.loss_scale}>")


def _in_dtype(x, dtype):
    """A float array (or a tuple/list/dict of them) in `dtype`; other arguments as they are."""
    if isinstance(x, np.ndarray) and dtypes.is_float(x.dtype):
        return x.astype(dtype, copy=False)
    if isinstance(x, (tuple, list)):
        return type(x)(_in_dtype(t, dtype) for t in x)
    if isinstance(x, dict):
        return {k: _in_dtype(v, dtype) for k, v in x.items()}
    return x


def _restore_mixed(fn, optimizer, options, state, steps, scaler):
    step = train_step(fn, optimizer, **options)
    step.state.update(state)
    step.update.steps = steps
    step.loss_scale, step.good_steps, step.skipped, step.skipped_steps, step.growth_interval = scaler
    return step


def train_step(f=None, optimizer=None, wrt=None, backend="numpy", clip_norm=None, accumulate=1, has_aux=False,
               memory_budget=None, compute_dtype=None):
    """train_step(f, optimizer, wrt=None, clip_norm=None, accumulate=1, has_aux=False, memory_budget=None,
    compute_dtype=None): a callable doing one optimizer step in place; returns the loss (with has_aux=True f
    returns (loss, aux), and so does the step); under memory_budget residuals beyond it are recomputed; with
    compute_dtype="bfloat16" or "float16" the forward and backward passes run in that dtype on float32 master
    parameters (float16 with dynamic loss scaling: MixedPrecisionStep)."""
    options = {"wrt": wrt, "backend": backend, "clip_norm": clip_norm, "accumulate": accumulate, "has_aux": has_aux,
               "memory_budget": memory_budget}
    if compute_dtype is not None and compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype is one of {', '.join(map(repr, COMPUTE_DTYPES))} or None, "
                         f"got {compute_dtype!r}")
    if compute_dtype in ("bfloat16", "float16"):
        if has_aux or memory_budget is not None:
            raise ValueError(f"compute_dtype={compute_dtype!r} does not take "
                             f"{'has_aux=True' if has_aux else 'memory_budget='} yet")
        _check_clip_norm(clip_norm)
        dtypes.named(compute_dtype)  # ml_dtypes missing: the ImportError naming the extra, now

        def make(g):
            return MixedPrecisionStep(g, optimizer, compute_dtype, wrt=wrt, backend=backend, clip_norm=clip_norm,
                                      accumulate=accumulate)
    else:  # float32 compute on float32 parameters is what every step does

        def make(g):
            return TrainStep(g, optimizer, **options)
    if f is None or isinstance(f, Optimizer):
        optimizer = f if isinstance(f, Optimizer) else optimizer
        return make
    if optimizer is None:
        raise TypeError("train_step needs an optimizer: sb.train_step(f, sb.optim.Adam(lr=1e-3), wrt=...)")
    return make(f)
