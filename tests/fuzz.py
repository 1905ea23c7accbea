"""The fuzzer's long run, outside CI: many random programs (tests/fuzzgen.py) on one or both backends.

    python -m tests.fuzz --examples 20000 --seed 1 --backend both --out /tmp/fuzz

Run from the repository root (the working tree's compiler is imported). Every program gets all the
checks of tests/test_fuzz.py (fuzzgen.check). It prints progress about once a minute and a summary at
the end (or on Ctrl-C / SIGTERM): programs per backend, passed, skipped, failed, and throughput per
backend (programs per second of time spent compiling and calling that backend). Each failure is saved
as `failure_<seed>.py` in --out: the model's source, with the arguments, the error and the command
that runs that one program again (`--program-seed <seed>`, which prints the full traceback).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("SYMBACKPROP_POISON_FREED", "1")  # as in the tests: a use after free fails loudly
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fuzzgen  # noqa: E402
import symbackprop as sb  # noqa: E402

BACKENDS = {"numpy": ("numpy",), "llvm": ("llvm",), "both": ("numpy", "llvm")}


def program_seed(seed, k):
    return seed * 1_000_003 + k


def failure_text(program, seed, backends, error):
    """A reproducing file: the program's module source, and how it was called, as comments."""
    args = ", ".join(f"{p.name}={p.kind}{list(p.shape) if p.shape else ''}" + (f"={p.value!r}" if p.kind == "static"
                                                                               else "")
                     for p in program.params)
    layouts = {program.params[i].name: k for i, k in program.layouts.items()}
    header = [f"# fuzz failure, program seed {seed} on {', '.join(backends)}",
              f"# dtype={program.dtype} arguments seed={program.seed} wrt={program.wrt!r} "
              f"value_and_grad={program.with_value} every_wrt={program.every_wrt}",
              f"# arguments: {args}",
              f"# layouts: {layouts or 'all contiguous'}",
              f"# run it again: python -m tests.fuzz --program-seed {seed} --backend "
              f"{'both' if len(backends) == 2 else backends[0]}",
              "# error:"] + ["#   " + line for line in error.strip().split("\n")[-30:]]
    return "\n".join(header) + "\n\n" + program.source


class Run:
    def __init__(self, options):
        self.options = options
        self.backends = BACKENDS[options.backend]
        self.out = Path(options.out or tempfile.mkdtemp(prefix="symbackprop-fuzz-"))
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = self.out / "programs"
        self.work.mkdir(exist_ok=True)
        self.counts = {"programs": 0, "passed": 0, "skipped": 0, "failed": 0, "with_regions": 0,
                       **{b: 0 for b in self.backends}}
        self.timings = {b: 0.0 for b in self.backends}
        self.failures = []
        self.start = time.time()
        self.log = open(self.out / "log.jsonl", "a")

    def one(self, seed):
        record = {"seed": seed}
        try:
            program = fuzzgen.generate(fuzzgen.Chooser(seed), regions=self.options.regions)
        except Exception:  # noqa: BLE001 - a generator bug is a finding too
            record.update(result="failed", error="generator: " + traceback.format_exc()[-2000:])
            self.counts["failed"] += 1
            self.failures.append({"seed": seed, "error": record["error"].split("\n")[-2]})
            return record
        record["dtype"] = program.dtype
        record["features"] = sorted(program.features)
        self.counts["with_regions"] += bool(program.features & fuzzgen.REGION_FEATURES)
        try:
            with time_limit(self.options.timeout):
                fuzzgen.check(program, self.work, self.backends, timings=self.timings)
            record["result"] = "passed"
            self.counts["passed"] += 1
        except fuzzgen.Skip as why:
            record.update(result="skipped", why=str(why))
            self.counts["skipped"] += 1
        except Exception as e:  # noqa: BLE001 - every escape is a finding
            error = traceback.format_exc()
            record.update(result="failed", error=f"{type(e).__name__}: {e}"[:2000])
            path = self.out / f"failure_{seed}.py"
            path.write_text(failure_text(program, seed, self.backends, error))
            self.counts["failed"] += 1
            self.failures.append({"seed": seed, "file": str(path), "error": record["error"].split("\n")[0][:200]})
        self.counts["programs"] += 1
        for b in self.backends:
            self.counts[b] += 1
        return record

    def summary(self):
        seconds = time.time() - self.start
        return {**self.counts, "seconds": round(seconds, 1),
                "programs_per_second": round(self.counts["programs"] / max(seconds, 1e-9), 2),
                "per_backend_programs_per_second": {b: round(self.counts[b] / t, 2) if t else None
                                                    for b, t in self.timings.items()},
                "seconds_in_backend": {b: round(t, 1) for b, t in self.timings.items()},
                "failures": self.failures, "out": str(self.out), "compiler": sb.__file__}

    def progress(self, k, total):
        s = self.summary()
        rates = ", ".join(f"{b} {self.counts[b]} ({r}/s)" for b, r in s["per_backend_programs_per_second"].items())
        print(f"[{time.strftime('%H:%M:%S')}] {k}/{total} programs in {s['seconds']:.0f}s: {rates}; "
              f"passed {self.counts['passed']}, skipped {self.counts['skipped']}, failed {self.counts['failed']}; "
              f"{self.counts['with_regions']} with value-dependent control flow",
              flush=True)
        (self.out / "summary.json").write_text(json.dumps(s, indent=1))


class ProgramTimeout(Exception):
    """A program that compiled or ran longer than --timeout: compile time must stay linear, so a
    hang is a finding (fuzz seed 303001779 once ran 37 minutes in the fusion pass)."""


@contextlib.contextmanager
def time_limit(seconds):
    if not seconds:
        yield
        return

    def expire(*_):
        raise ProgramTimeout(f"the program took more than {seconds:g} s to compile and check")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=200, help="programs to run")
    parser.add_argument("--seed", type=int, default=0, help="the run's seed (program k gets seed*1000003 + k)")
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="both")
    parser.add_argument("--out", default=None, help="directory for failures, log.jsonl and summary.json")
    parser.add_argument("--program-seed", type=int, default=None,
                        help="run only the program with this seed and print its source and traceback")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds one program may take before it is recorded as a failure (0: none)")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between progress lines")
    parser.add_argument("--regions", action="store_true",
                        help="value-dependent if/while/break far more often (fuzzgen.generate's `regions`)")
    options = parser.parse_args(argv)
    if options.program_seed is not None:
        program = fuzzgen.generate(fuzzgen.Chooser(options.program_seed), regions=options.regions)
        print(program.describe())
        print("# layouts:", {program.params[i].name: k for i, k in program.layouts.items()})
        with tempfile.TemporaryDirectory() as work:
            fuzzgen.check(program, work, BACKENDS[options.backend])
        print("passed")
        return 0
    run = Run(options)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    last = time.time()
    k = 0
    try:
        for k in range(1, options.examples + 1):
            run.log.write(json.dumps(run.one(program_seed(options.seed, k - 1))) + "\n")
            run.log.flush()
            if time.time() - last >= options.every:
                run.progress(k, options.examples)
                last = time.time()
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    run.progress(run.counts["programs"], options.examples)
    print(json.dumps(run.summary(), indent=1))
    return 1 if run.counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
