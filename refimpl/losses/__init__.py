"""The losses, one module each, with hand-written backward passes.

Each module has ``forward(...) -> (loss, cache)`` and ``backward(dout, cache)
-> tuple of grads`` (one per array input). ``variant="paper"`` follows the
paper with its errata fixed; ``variant="official"`` reproduces the authors'
public code. See ``../shared/PAPERS.md`` in the project for the sources.
"""
