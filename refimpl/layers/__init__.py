"""Layers with hand-written backward passes.

Each module has ``forward(...) -> (out, cache)`` and ``backward(dout, cache)
-> grads`` (one gradient per array input, in order), PyTorch layouts (NCHW,
conv weights (F, C, KH, KW)).
"""
