"""The recipes' shared pieces: samplers, splits, seeds, output writing, figures helpers."""
import json

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from refimpl.recipes import _common as C

seeds = st.integers(0, 2**32 - 1)


@given(seed=seeds, groups=st.integers(3, 40), per=st.integers(1, 4))
@example(seed=0, groups=3, per=1)
def test_group_split_partitions_by_group(seed, groups, per):
    g = np.repeat(np.arange(groups), per)
    parts = C.group_split(g, (0.7, 0.15, 0.15), rng=np.random.default_rng(seed))
    joined = np.sort(np.concatenate(parts))
    np.testing.assert_array_equal(joined, np.arange(len(g)))                 # every image exactly once
    sets = [set(g[p].tolist()) for p in parts]
    assert all(s for s in sets)                                              # no empty part
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])  # no subject leaks
    assert abs(len(sets[0]) - 0.7 * groups) <= 1.5


@given(seed=seeds, sizes=st.lists(st.integers(1, 30), min_size=2, max_size=6), batch=st.integers(1, 64))
def test_balanced_batch_counts_differ_by_at_most_one(seed, sizes, batch):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    idx = C.balanced_batch(np.random.default_rng(seed), labels, batch)
    counts = np.bincount(labels[idx], minlength=len(sizes))
    assert len(idx) == batch and counts.max() - counts.min() <= 1
    for c, k in enumerate(counts):                                           # no repeats while enough
        if k <= sizes[c]:
            assert len(np.unique(idx[labels[idx] == c])) == k


@given(seed=seeds, per_class=st.integers(4, 12), batch=st.integers(2, 8))
def test_one_per_group_batch_takes_one_slice_of_distinct_patients(seed, per_class, batch):
    gen = np.random.default_rng(seed)
    n_groups = 2 * per_class
    groups = np.repeat(gen.permutation(n_groups), gen.integers(1, 6, n_groups))  # unsorted, uneven
    labels = groups % 2
    idx = C.one_per_group_batch(gen, groups, labels, batch)
    assert len(np.unique(groups[idx])) == batch                              # one slice per patient
    counts = np.bincount(labels[idx], minlength=2)
    assert abs(counts[0] - counts[1]) <= 1                                   # class-balanced


def test_one_per_group_batch_reaches_every_slice():
    groups = np.array([0, 0, 0, 1])
    seen = set()
    for s in range(50):
        seen.update(C.one_per_group_batch(np.random.default_rng(s), groups, np.zeros(4, int), 1).tolist())
    assert seen == {0, 1, 2, 3}


@given(seed=seeds, sizes=st.lists(st.integers(1, 8), min_size=2, max_size=5), n=st.integers(1, 50))
def test_sample_pairs_flags_and_partners(seed, sizes, n):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    i, j, same = C.sample_pairs(np.random.default_rng(seed), labels, n)
    np.testing.assert_array_equal(same, labels[i] == labels[j])
    assert int(same.sum()) == round(0.5 * n)                                # the asked fraction
    alone = np.asarray(sizes)[labels[i]] == 1
    assert np.all((i != j) | (same & alone))                                 # never itself unless alone


def test_sample_pairs_needs_two_classes():
    with pytest.raises(ValueError, match="two classes"):
        C.sample_pairs(np.random.default_rng(0), np.zeros(5, int), 4)


def test_rng_for_is_keyed_and_reproducible():
    a = C.rng_for(1, "x", 2).random(3)
    np.testing.assert_array_equal(a, C.rng_for(1, "x", 2).random(3))
    assert not np.array_equal(a, C.rng_for(1, "x", 3).random(3))
    assert not np.array_equal(a, C.rng_for(2, "x", 2).random(3))
    with pytest.raises(ValueError, match="seed"):
        C.rng_for(-1)


def test_write_json_keeps_order_and_is_strict(tmp_path):
    path = tmp_path / "m.json"
    C.write_json(path, {"b": np.float32(0.5), "a": [np.int64(2), float("nan")], "c": np.bool_(True)})
    text = path.read_text()
    assert json.loads(text) == {"a": [2, None], "b": 0.5, "c": True}
    assert text.index('"b"') < text.index('"a"') < text.index('"c"')         # the dict's own order


def test_compare_claim_direction_follows_the_metric():
    methods = {"new": {"maee": 1.5, "f1": 0.4}, "old": {"maee": 2.0, "f1": 0.5}}
    lower = C.compare("new has lower maee", methods, "maee", "new", "old", higher_is_better=False)
    higher = C.compare("new has higher f1", methods, "f1", "new", "old")
    assert lower["holds"] and lower["effect"] == pytest.approx(0.5)
    assert not higher["holds"] and higher["effect"] == pytest.approx(-0.1)


def test_pca_2d_matches_svd_and_is_deterministic():
    x = np.random.default_rng(0).standard_normal((30, 5)) * np.array([5.0, 2.0, 1.0, 0.5, 0.1])
    p = C.pca_2d(x)
    assert abs(p[:, 0].var() - np.linalg.svd(x - x.mean(0), compute_uv=False)[0] ** 2 / 30) < 1e-9
    np.testing.assert_array_equal(p, C.pca_2d(x))
    np.testing.assert_allclose(np.abs(p), np.abs(C.pca_2d(x[::-1]))[::-1], atol=1e-12)


def test_similarity_by_label_distance_groups_pairs():
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    centres, median, _, _ = C.similarity_by_label_distance(emb, np.array([0, 0, 2]))
    assert centres.tolist() == [0, 2] and median.tolist() == [1.0, 0.0]


def test_resolve_config_rejects_unknown_names():
    with pytest.raises(TypeError, match="unknown hyperparameter"):
        C.resolve_config({"steps": 1}, {"stepz": 2})
