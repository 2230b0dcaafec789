"""Worked examples, run from the repository root (``python -m examples.<name>.run``).

A regular package on purpose: opacus installs a top-level ``examples`` package of its own, which would
shadow a namespace package of this name.
"""
