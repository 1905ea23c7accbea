"""The one pipeline: a typed Program, the list of stages each entry point runs, and the specialiser.

Every entry point (value_and_grad, its forward, train_step, explain) builds a
Program for one signature and runs a list of stages from `stages.py` on it;
the backend then turns the finished Program into an Artifact. The Specialiser
holds the per-signature cache, the fast path and export for all of them.
"""
