"""The losses, one module each, with hand-written backward passes.

Each module has ``forward(...) -> (loss, cache)`` and ``backward(dout, cache)
-> tuple of grads`` (one per array input). ``variant="paper"`` follows the
paper with its errata fixed; ``variant="official"`` reproduces the authors'
public code, and each docstring says where the paper's printed equations
and that code disagree (the errata), with the paper and equation number.
"""
