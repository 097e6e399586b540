"""A real data-parallel run (torch.distributed, gloo, spawned processes) checked against refimpl's ``anchors=``.

Each rank of :func:`refimpl.ddp.example_step` embeds its shard with a linear
layer in DistributedDataParallel, all-gathers, computes the WSP loss of its
own anchors and steps backward; :func:`refimpl.ddp.check` compares every
rank's gradients with refimpl's single-process ones. The right gathers must
pass to float64 rounding and each classic mistake must be reported, with the
factor it is off by where that factor is exact (a missing world-size scale).
"""
import functools
import os
import time

import numpy as np
import pytest

from refimpl import ddp
from refimpl.losses import kernel


def _refimpl_loss(data):
    return functools.partial(kernel.forward, labels=data["labels"], depth=data["depth"], sigma=data["sigma"],
                             temperature=data["temperature"])


def _reports(results, data):
    return {gather: ddp.check([r[gather] for r in results], data["x"], data["weight"], _refimpl_loss(data),
                              kernel.backward)
            for gather in results[0]}


@pytest.mark.torch
def test_two_processes_right_gathers_pass_and_the_classic_mistakes_are_caught(torch):
    data = ddp.example_data(m=12)
    reports = _reports(ddp.run(ddp.example_step, 2, data, timeout=60), data)
    for gather in ddp.RIGHT:
        assert reports[gather].ok, f"{gather}:\n{reports[gather]}"
    for gather in ddp.WRONG:
        report = reports[gather]
        assert not report.ok, f"{gather} passed:\n{report}"
        assert "FAIL" in str(report) and "WRONG" in str(report)
        wrong = {(e.rank, e.quantity) for e in report.entries if not e.ok}
        assert wrong == {(r, q) for r in range(2) for q in ("dz", "dweight")}, f"{gather}:\n{report}"
    # the loss was not scaled by the world size: every gradient is exactly half of the right one
    assert all(e.factor == pytest.approx(0.5, rel=1e-12) for e in reports["unscaled"].entries
               if e.quantity != "loss")


@pytest.mark.torch
def test_three_processes(torch):
    data = ddp.example_data(m=12, seed=1)
    reports = _reports(ddp.run(ddp.example_step, 3, data, ("autograd", "unscaled", "plain"), timeout=60), data)
    assert reports["autograd"].ok, str(reports["autograd"])
    assert not reports["plain"].ok
    assert all(e.factor == pytest.approx(1 / 3, rel=1e-12) for e in reports["unscaled"].entries
               if e.quantity != "loss")


def _sleep(rank, world_size, seconds):
    time.sleep(seconds)


@pytest.mark.torch
def test_a_hung_group_times_out_instead_of_hanging(torch):
    """The ranks sleep 600 s after joining: the run stops 4 s after they joined (however long their start
    took on a loaded machine), with the error, instead of returning after the sleep."""
    with pytest.raises(TimeoutError, match="did not finish within 4 s of joining the group"):
        ddp.run(_sleep, 2, 600, timeout=4)


def _unreached(rank, world_size):
    raise AssertionError("the run is stopped before any rank gets here")


@pytest.mark.torch
def test_ranks_that_never_join_time_out_as_a_startup_failure(torch, monkeypatch):
    monkeypatch.setattr(ddp, "_joined", lambda out, rank: os.path.join(out, "never"))
    with pytest.raises(TimeoutError, match="did not all join the group within 0.5 s"):
        ddp.run(_unreached, 2, startup_timeout=0.5)


def test_check_passes_the_expected_values_and_points_at_a_wrong_entry():
    """The check itself, without torch: the expected values pass; one wrong number fails at its rank."""
    data = ddp.example_data(m=8, seed=2)
    loss = _refimpl_loss(data)
    want = ddp.expected(data["x"], data["weight"], loss, kernel.backward, 4)
    assert ddp.check(want, data["x"], data["weight"], loss, kernel.backward).ok
    # the per-rank losses of refimpl add up to the full loss; the gradients reach every row
    full, _ = loss(data["x"] @ data["weight"].T)
    assert sum(w["loss"] for w in want) == pytest.approx(float(full), rel=1e-12)
    bad = [dict(w) for w in want]
    bad[2]["dz"] = bad[2]["dz"].copy()
    bad[2]["dz"][1, 0] += 1e-6 * np.abs(bad[2]["dz"]).max()
    report = ddp.check(bad, data["x"], data["weight"], loss, kernel.backward)
    assert not report.ok
    assert [(e.rank, e.quantity) for e in report.entries if not e.ok] == [(2, "dz")]
    with pytest.raises(AssertionError, match="rank"):
        report.raise_if_failed()


def test_shards_must_be_equal():
    with pytest.raises(ValueError, match="equal shards"):
        ddp.shards(7, 2)
