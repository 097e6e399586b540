"""The teaching forms ``forward_naive``/``backward_naive`` run on every backend and agree with NumPy."""
import numpy as np
import pytest

from refimpl import backend
from refimpl.losses import adacon, kernel, margin, preference

GEN = np.random.default_rng(11)
Z = GEN.standard_normal((6, 3))
CALLS = {
    "margin": (margin, (Z, Z[::-1].copy(), np.array([1, 0, 1, 0, 1, 0])), dict(margin=1.5)),
    "preference": (preference, (Z, Z[::-1].copy(), Z[:2] + 1.0, np.linspace(0, 1, 6)), {}),
    "kernel": (kernel, (Z,), dict(labels=np.array([0, 0, 1, 1, 2, 2]), depth=np.linspace(0, 1, 6))),
    "adacon": (adacon, (Z, np.array([0.1, 0.1, 0.2, 0.5, 0.5, 0.9])), dict(scale=3.0)),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_teaching_form_runs_on_every_backend(xpd, name):
    module, args, kwargs = CALLS[name]
    dout = np.linspace(-1, 1, 6)
    want, want_cache = module.forward_naive(*args, **kwargs, reduction="none")
    want_grads = module.backward_naive(dout, want_cache)
    put = {k: xpd.put(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    got, cache = module.forward_naive(*[xpd.put(a) for a in args], **put, reduction="none")
    np.testing.assert_allclose(backend.to_numpy(got), want, rtol=1e-12)
    for g, w in zip(module.backward_naive(xpd.put(dout), cache), want_grads):
        np.testing.assert_allclose(backend.to_numpy(g), w, rtol=1e-10, atol=1e-14)
