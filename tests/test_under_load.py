"""Under load: threads sharing one compiled function, and memory over many calls.

8 threads call one compiled function with 100 signatures while the cache holds 16, so that
entries are evicted while other threads hit them: every result must be right, and each
signature compiled at most once at a time and only when it is not in the cache. Then bounded
versions of benchmarks/memory_flat.py: many calls of a compiled function (both backends) and of
a train step leave resident memory flat.
"""
import gc
import random
import sys
import threading
from collections import Counter

import numpy as np
import pytest

import symbackprop as sb
from benchmarks import memory_flat
from symbackprop.pipeline import specialiser as specialiser_module

SIGNATURES = 100
THREADS = 8
CALLS = 60  # per thread: with a cache of 16, about 400 compilations under contention


def weighted_square(x, k):
    return k * np.sum(x * x)


@pytest.fixture
def contention(monkeypatch):
    monkeypatch.setattr(specialiser_module, "CACHE_SIZE", 16)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    yield
    sys.setswitchinterval(old)


def _hammer(f, run, calls=CALLS):
    errors, barrier = [], threading.Barrier(THREADS)

    def worker(seed):
        rng = random.Random(seed)
        barrier.wait()
        try:
            for _ in range(calls):
                n = rng.randrange(1, SIGNATURES + 1)
                x = np.arange(n, dtype=np.float64)
                run(f, x, n)
        except BaseException as e:  # noqa: BLE001  (reported below with the thread's seed)
            errors.append((seed, repr(e)))

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def _watch_compilations(s):
    """Wrap `s.compile`: fail if one signature compiles twice at once or while it is in the cache."""
    inflight, problems, compiled = Counter(), [], Counter()
    guard = threading.Lock()
    real = s.compile

    def compile(specs, kind=None, backend=None):
        with guard:
            inflight[specs, kind] += 1
            if inflight[specs, kind] > 1:
                problems.append(("compiled twice at once", specs))
            compiled[specs, kind] += 1
        # the specialiser calls compile holding its lock, so the cache cannot change under this look
        # (forward entries are bare callables: for them only the at-once check applies)
        if kind is None and any(entry_specs(e) == specs for e in list(s.cache.values())):
            problems.append(("compiled while cached", specs))
        try:
            return real(specs, kind, backend)
        finally:
            with guard:
                inflight[specs, kind] -= 1

    s.compile = compile
    return problems, compiled


def entry_specs(entry):
    return entry.specs if hasattr(entry, "specs") else entry.__self__.specs


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_threads_share_one_function_across_evictions(contention, backend):
    f = sb.value_and_grad(weighted_square, wrt="x", backend=backend)
    problems, compiled = _watch_compilations(f.specialiser)

    def run(f, x, n):
        value, grad = f(x, n)
        assert value == n * np.sum(x * x), (n, value)
        np.testing.assert_array_equal(grad, 2 * n * x)

    _hammer(f, run, calls=CALLS if backend == "numpy" else CALLS // 4)  # an LLVM compile costs ~20x more
    assert problems == []
    cache = f.specialiser.cache
    assert len(cache) <= 16 and len(set(map(entry_specs, cache.values()))) == len(cache)
    assert len(compiled) > 16  # evictions happened: more signatures were compiled than the cache holds
    assert f.compilations == sum(compiled.values())


def test_threads_share_one_forward_and_train_step(contention):
    f = sb.value_and_grad(weighted_square, wrt="x")
    problems, _ = _watch_compilations(f.specialiser)

    def run(f, x, n):
        assert f.forward(x, n) == n * np.sum(x * x)

    _hammer(f, run)
    assert problems == [] and len(f.specialiser.forwards) <= 16


def test_threads_share_one_train_step(contention):
    step = sb.train_step(weighted_square, sb.optim.SGD(lr=0.0), wrt="x")  # lr 0: x stays, the loss is known
    problems, _ = _watch_compilations(step.specialiser)

    def run(step, x, n):
        assert step(x, n) == n * np.sum(x * x)

    _hammer(step, run)
    assert problems == [] and len(step.specialiser.cache) <= 16


# ---- memory over many calls: a bounded benchmarks/memory_flat.py ----------------------------------

@pytest.mark.parametrize("case", [0, 1, 2], ids=["numpy", "llvm", "train_step"])
def test_many_calls_leave_resident_memory_flat(case):
    name, call = list(memory_flat.cases())[case]
    gc.collect()
    r = memory_flat.readings(call, calls=20_000, points=4)
    # a leak of even one small array (a few hundred bytes) per call would add several MiB here
    assert r[-1] - r[0] < 1024 * 1024, (name, r)
