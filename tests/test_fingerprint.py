"""The numeric fingerprint names the same libraries in a fresh process and after others were imported."""
import json
import os
import subprocess
import sys
from pathlib import Path

from refimpl.fingerprint import fingerprint, same_bits

ROOT = Path(__file__).resolve().parents[1]


def test_a_fresh_process_and_this_one_give_the_same_bits_fingerprint():
    """A fresh interpreter has loaded only NumPy's BLAS; this one (the test suite) SciPy's and torch's
    libraries too, in another order: the fingerprint lists the same BLAS libraries, sorted."""
    code = "import json; from refimpl.fingerprint import fingerprint; print(json.dumps(fingerprint()))"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    fresh = json.loads(done.stdout)
    here = fingerprint()
    assert [b["library"] for b in fresh["blas"]] == [b["library"] for b in here["blas"]]
    if here["blas_source"] == "threadpoolctl" and all(b["threads"] == f["threads"]
                                                      for b, f in zip(here["blas"], fresh["blas"])):
        assert same_bits(fresh, here)
