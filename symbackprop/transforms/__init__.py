"""Transforms of the IR: reverse mode (and, later, forward mode, batching, recompute)."""
