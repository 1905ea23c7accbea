"""Helpers the examples share: where pictures go, a progress bar, matplotlib if installed."""
from __future__ import annotations

import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def out_path(name: str) -> Path:
    """examples/out/<name>, the folder made on first use (it is gitignored)."""
    OUT.mkdir(exist_ok=True)
    return OUT / name


def pyplot():
    """matplotlib.pyplot drawing to files, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


class _Bar:
    """A tiny stand-in for tqdm: one line on stderr, redrawn at most ten times a second."""

    def __init__(self, iterable, desc="", total=None):
        self.iterable, self.desc = iterable, desc
        self.total = total if total is not None else len(iterable)
        self.postfix, self._shown = "", 0.0

    def __iter__(self):
        start = time.perf_counter()
        for i, item in enumerate(self.iterable, 1):
            yield item
            now = time.perf_counter()
            if now - self._shown > 0.1 or i == self.total:
                self._shown = now
                filled = int(30 * i / self.total)
                sys.stderr.write(f"\r{self.desc} [{'#' * filled}{'.' * (30 - filled)}] {i}/{self.total} "
                                 f"{now - start:5.1f}s {self.postfix}")
                sys.stderr.flush()
        sys.stderr.write("\n")

    def set_postfix_str(self, text):
        self.postfix = text

    def write(self, text):
        """Print a line above the bar."""
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()
        print(text, flush=True)


def progress(iterable, desc=""):
    """tqdm(iterable) when tqdm is installed, else a one-line bar of our own; both have set_postfix_str and write."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _Bar(iterable, desc)
    return tqdm(iterable, desc=desc, leave=True, mininterval=0.1)
