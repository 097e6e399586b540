"""Benchmarks of refimpl against PyTorch on the same machine (``refimpl bench``)."""
