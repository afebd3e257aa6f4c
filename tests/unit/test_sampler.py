"""BalancedBatchSampler and composite_keys: balance, epoch rule, ranks, determinism, errors."""
from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from trial.sampler import BalancedBatchSampler, composite_keys

FAST = settings(max_examples=25, deadline=None)


def make_keys(sizes: list[int], seed: int = 0) -> np.ndarray:
    """Key k repeated sizes[k] times, shuffled so that strata interleave in the dataset."""
    keys = np.repeat(np.arange(len(sizes)), sizes)
    return np.random.default_rng(seed).permutation(keys)


def key_counts(keys: np.ndarray, batch: list[int], n_keys: int) -> np.ndarray:
    return np.bincount(keys[batch], minlength=n_keys)


def epoch_samples(sizes: list[int], weights: list[float] | None = None) -> int:
    """The documented epoch length S: every sample shown at least once, capped at n_keys * n_largest."""
    n = np.array(sizes, dtype=float)
    w = np.ones(len(sizes)) if weights is None else np.array(weights, dtype=float)
    return int(min(np.floor(np.round(np.max(n * w.sum() / w), 9)), len(sizes) * n.max()))


def global_plan(samplers: list[BalancedBatchSampler]) -> list[list[int]]:
    """Interleave the ranks' batches back into plan order (global batch i is rank i % R's)."""
    per_rank = [list(s) for s in samplers]
    return [per_rank[i % len(samplers)][i // len(samplers)] for i in range(sum(map(len, per_rank)))]


sizes_strategy = st.lists(st.integers(1, 150), min_size=2, max_size=6)


@FAST
@given(sizes=sizes_strategy, extra=st.integers(0, 40), drop_last=st.booleans(), seed=st.integers(0, 2**16))
@example(sizes=[950, 50], extra=30, drop_last=False, seed=0)  # 95/5
@example(sizes=[5, 1, 1], extra=0, drop_last=False, seed=1)  # batch_size == n_keys
@example(sizes=[10, 1, 19, 17], extra=9, drop_last=False, seed=37)  # the tail must even out the epoch totals
def test_every_batch_is_balanced_and_the_largest_stratum_never_repeats(sizes, extra, drop_last, seed):
    n_keys = len(sizes)
    keys = make_keys(sizes, seed)
    batch_size = n_keys + extra
    total = epoch_samples(sizes)
    if drop_last and total < batch_size:
        with pytest.raises(ValueError, match="too few for one full batch"):
            BalancedBatchSampler(keys, batch_size, drop_last=True)
        return
    sampler = BalancedBatchSampler(keys, batch_size, seed=seed, drop_last=drop_last)
    batches = list(sampler)

    assert len(batches) == len(sampler)
    for batch in batches:
        counts = key_counts(keys, batch, n_keys)
        assert counts.max() - counts.min() <= 1, counts
    assert all(len(b) == batch_size for b in batches[:-1])
    # The epoch rule: S samples, cut to whole batches with drop_last.
    assert sum(map(len, batches)) == (total // batch_size * batch_size if drop_last else total)
    # Equal shares: over the epoch every key gets the same total, up to one.
    totals = np.bincount(keys[np.concatenate(batches)], minlength=n_keys)
    assert totals.max() - totals.min() <= 1
    largest = np.flatnonzero(keys == np.argmax(sizes))
    shown = Counter(i for b in batches for i in b if keys[i] == np.argmax(sizes))
    assert max(shown.values()) == 1
    if not drop_last:
        assert set(shown) == set(largest.tolist())


@FAST
@given(
    sizes=sizes_strategy,
    weights=st.lists(st.integers(1, 5), min_size=6, max_size=6),
    extra=st.integers(0, 40),
    drop_last=st.booleans(),
    seed=st.integers(0, 2**16),
)
# Found by searching for plans that break a guarantee under small changes to the code:
@example(sizes=[7, 24, 11, 12], weights=[3, 3, 5, 5, 1, 1], extra=9, drop_last=False, seed=2)  # tail priority
@example(sizes=[16, 17, 22, 14], weights=[4, 1, 2, 2, 1, 1], extra=10, drop_last=False, seed=0)  # tail priority
@example(sizes=[5, 13, 7, 1], weights=[4, 3, 3, 1, 1, 1], extra=11, drop_last=False, seed=4)  # S = 47.67 -> 47
def test_weights_set_each_batch_share(sizes, weights, extra, drop_last, seed):
    n_keys = len(sizes)
    weights = weights[:n_keys]
    keys = make_keys(sizes, seed)
    batch_size = n_keys + extra
    share = np.array(weights) / sum(weights)
    total = epoch_samples(sizes, weights)
    assume(not drop_last or total >= batch_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # shares below one sample per batch warn; fine here
        sampler = BalancedBatchSampler(keys, batch_size, drop_last=drop_last, weights=dict(enumerate(weights)), seed=seed)
    batches = list(sampler)

    assert sampler.epoch_samples == total
    assert sum(map(len, batches)) == (total // batch_size * batch_size if drop_last else total)
    for batch in batches:
        exact = len(batch) * share
        counts = key_counts(keys, batch, n_keys)
        assert np.all(counts >= np.floor(exact)) and np.all(counts <= np.ceil(exact)), (counts, exact)
    # Over the epoch each stratum's total is its share of the epoch, rounded either way.
    totals = np.bincount(keys[np.concatenate(batches)], minlength=n_keys)
    assert np.all(np.abs(totals - sum(map(len, batches)) * share) < 1), totals
    # Strata with at least their share of the epoch are shown without repeats.
    for k in np.flatnonzero(np.array(sizes) >= total * share):
        shown = Counter(i for b in batches for i in b if keys[i] == k)
        assert max(shown.values(), default=1) == 1


def test_weights_by_composite_key():
    frame = pd.DataFrame({"label": [0] * 60 + [1] * 40, "site": ["a", "b"] * 50})
    keys = composite_keys(frame, ["label", "site"])
    weights = {"0|a": 1, "0|b": 1, "1|a": 2, "1|b": 4}
    sampler = BalancedBatchSampler(keys, 16, weights=weights)
    for batch in sampler:
        assert Counter(keys[batch]) == {"0|a": 2, "0|b": 2, "1|a": 4, "1|b": 8}


@pytest.mark.parametrize("minority", [50, 47])
def test_minority_samples_are_redrawn_evenly(minority):
    keys = make_keys([950, minority])
    sampler = BalancedBatchSampler(keys, 32, drop_last=False)
    draws = Counter(i for b in sampler for i in b if keys[i] == 1)
    # 950 draws cycle through reshuffled passes over the minority samples, so every
    # one of them is shown floor or ceil of 950 / minority times.
    assert sum(draws.values()) == 950 and len(draws) == minority
    assert set(draws.values()) <= {950 // minority, -(-950 // minority)}


def test_the_minority_is_reshuffled_every_pass():
    # 10 minority samples, 2 per batch of 4, 40 passes over them in an epoch. Without a
    # fresh shuffle per pass the same 5 pairs would meet in every batch.
    keys = make_keys([400, 10])
    pairs = {frozenset(int(i) for i in b if keys[i] == 1) for b in BalancedBatchSampler(keys, 4)}
    assert len(pairs) > 20


def _mixed_in_order(batch: list[int], keys: np.ndarray) -> bool:
    """False when the batch is laid out stratum by stratum (each key's samples in one run)."""
    order = keys[batch]
    runs = 1 + int(np.count_nonzero(order[1:] != order[:-1]))
    return runs > len(set(order.tolist()))


def test_strata_are_mixed_within_every_part_of_the_plan():
    # Main batches, padding batches and the final partial batch are each shuffled inside,
    # so any slice of a batch (micro-batches, DataParallel scatter) mixes the strata.
    keys = make_keys([171, 40, 13])  # an epoch of 51 batches of 10 and a tail of 3
    tails = set()
    for epoch in range(6):
        samplers = [BalancedBatchSampler(keys, 10, num_replicas=3, rank=r, drop_last=False) for r in range(3)]
        for s in samplers:
            s.set_epoch(epoch)
        plan = global_plan(samplers)
        main, padding, tail = plan[:51], plan[51:-1], plan[-1]
        assert len(padding) == 2 and len(tail) == 3
        assert all(_mixed_in_order(b, keys) for b in main + padding)
        tails.add(tuple(keys[tail]))
    # The tail holds one sample of each stratum; it comes in several orders over the epochs.
    assert len(tails) > 2


@pytest.mark.parametrize("num_replicas", [2, 3, 4])
@pytest.mark.parametrize("drop_last", [True, False])
def test_ranks_share_one_plan_in_equal_disjoint_parts(num_replicas, drop_last):
    sizes = [171, 40, 13]  # an epoch of 3 * 171 samples: 51 batches of 10 and a tail of 3
    keys = make_keys(sizes)
    args = dict(batch_size=10, seed=3, drop_last=drop_last)
    single = list(BalancedBatchSampler(keys, **args))
    samplers = [BalancedBatchSampler(keys, num_replicas=num_replicas, rank=r, **args) for r in range(num_replicas)]
    for s in samplers:
        s.set_epoch(0)

    lengths = [len(list(s)) for s in samplers]
    assert lengths == [len(s) for s in samplers] and len(set(lengths)) == 1
    # Ranks take disjoint positions of one plan; together they give the single-replica plan,
    # cut to a multiple of num_replicas (drop_last) or padded with balanced re-drawn batches.
    plan = global_plan(samplers)
    assert len(plan) % num_replicas == 0
    if drop_last:
        assert plan == single[: len(plan)] and len(single) - len(plan) < num_replicas
    else:
        main, tail = single[:-1], single[-1]
        assert len(tail) == 3 and plan[: len(main)] == main and plan[-1] == tail
        padding = plan[len(main) : -1]
        assert len(padding) < num_replicas
        for batch in padding:
            counts = key_counts(keys, batch, len(sizes))
            assert len(batch) == 10 and counts.max() - counts.min() <= 1


def test_same_seed_and_epoch_give_the_same_batches_and_a_new_epoch_a_new_order():
    keys = make_keys([80, 30, 10])

    def batches(seed: int, epoch: int) -> list[list[int]]:
        sampler = BalancedBatchSampler(keys, 12, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert batches(5, 2) == batches(5, 2)
    assert batches(5, 2) != batches(5, 3)
    assert batches(5, 2) != batches(6, 2)
    # Iterating twice without set_epoch repeats the epoch.
    sampler = BalancedBatchSampler(keys, 12, seed=5)
    assert list(sampler) == list(sampler)


def test_the_default_seed_is_zero_and_pools_are_in_index_order():
    keys = make_keys([80, 30, 10])
    sampler = BalancedBatchSampler(keys, 12)
    assert list(sampler) == list(BalancedBatchSampler(keys, 12, seed=0))
    # Each stratum's pool lists its indices in increasing order (a stable sort): ranks on
    # different machines must build the same plan, and an unstable sort's order may differ.
    assert [p.tolist() for p in sampler._pools] == [np.flatnonzero(keys == k).tolist() for k in sampler.strata]


def test_a_pandas_series_of_keys_is_taken_as_its_values():
    keys = make_keys([30, 10])
    series = pd.Series(keys, index=np.arange(100, 140))
    assert list(BalancedBatchSampler(series, 4, seed=1)) == list(BalancedBatchSampler(keys, 4, seed=1))


@pytest.mark.parametrize(
    ("num_samples", "num_replicas", "drop_last", "per_rank"),
    [
        (40, 2, False, [2, 2]),  # 4 full batches of 10, no tail: nothing to pad
        (41, 2, False, [3, 3]),  # 4 full and a tail of 1: one padding batch evens the ranks
        (41, 2, True, [2, 2]),  # the tail is dropped
        (50, 2, True, [2, 2]),  # 5 full batches: the fifth is cut
        (50, 2, False, [3, 3]),  # 5 full batches and one padding batch
    ],
)
def test_batches_per_rank(num_samples, num_replicas, drop_last, per_rank):
    samplers = [
        BalancedBatchSampler(None, 10, num_samples=num_samples, num_replicas=num_replicas, rank=r, drop_last=drop_last)
        for r in range(num_replicas)
    ]
    assert [len(s) for s in samplers] == [len(list(s)) for s in samplers] == per_rank


def test_keys_none_is_plain_shuffling_covering_every_index_once():
    sampler = BalancedBatchSampler(None, 10, num_samples=103, drop_last=False)
    batches = list(sampler)
    assert [len(b) for b in batches] == [10] * 10 + [3] and len(sampler) == 11
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(103)) and flat != list(range(103))
    assert len(BalancedBatchSampler(None, 10, num_samples=103)) == 10


def test_tuple_and_string_keys():
    keys = [("a", 1)] * 30 + [("b", 2)] * 10
    sampler = BalancedBatchSampler(keys, 4)
    assert sampler.strata == (("a", 1), ("b", 2))
    for batch in sampler:
        assert Counter(keys[i] for i in batch) == {("a", 1): 2, ("b", 2): 2}
    strings = np.array(["x"] * 9 + ["y"] * 3)
    assert all(Counter(strings[b]) == {"x": 1, "y": 1} for b in BalancedBatchSampler(strings, 2))


def test_works_as_a_dataloader_batch_sampler():
    keys = make_keys([60, 20, 8])
    dataset = torch.utils.data.TensorDataset(torch.arange(len(keys)), torch.as_tensor(keys))
    sampler = BalancedBatchSampler(keys, 9, num_replicas=2, rank=1, seed=1)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler)
    assert len(loader) == len(sampler)
    seen = 0
    for indices, batch_keys in loader:
        assert indices.shape == (9,)
        assert torch.bincount(batch_keys, minlength=3).tolist() == [3, 3, 3]
        seen += 1
    assert seen == len(sampler)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(batch_size=0), "batch_size must be an integer >= 1, got 0"),
        (dict(batch_size=2), "batch_size=2 cannot hold one sample of each of the 3 keys"),
        (dict(num_replicas=0), "num_replicas must be an integer >= 1"),
        (dict(num_replicas=2, rank=2), r"rank must be an integer in \[0, num_replicas=2\), got 2"),
        (dict(rank=-1), "rank must be an integer"),
        (dict(rank=0.5), r"rank must be an integer in \[0, num_replicas=1\), got 0.5"),
        (dict(seed=-1), "seed must be an integer >= 0"),
        (dict(weights={"a": 1, "b": 1}), r"weights have no entry for keys \['c'\]"),
        (dict(weights={"a": 1, "b": 0, "c": 1}), "weights must be positive and finite, got {'b': 0}"),
        (dict(weights={"a": 1, "b": float("nan"), "c": 1}), "weights must be positive and finite"),
        (dict(keys=None), "num_samples must be an integer >= 1, got None"),
        (dict(keys=None, num_samples=10, weights={None: 1}), "^weights need keys: with keys=None there is only one stratum$"),
        (dict(keys=np.zeros((4, 2))), r"keys must be one-dimensional .* shape \(4, 2\)"),
        (dict(keys=[]), "^keys is empty: the dataset has no samples$"),
        (dict(num_samples=5), "num_samples=5 does not match len"),
        (dict(batch_size=64), "too few for one full batch of 64 on each of 1 replicas with drop_last=True; lower batch_size or use drop_last=False$"),
        (dict(batch_size=4, num_replicas=16), "on each of 16 replicas"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    args = dict(keys=["a"] * 8 + ["b"] * 4 + ["c"] * 2, batch_size=3) | kwargs
    with pytest.raises(ValueError, match=message):
        BalancedBatchSampler(args.pop("keys"), args.pop("batch_size"), **args)


def test_bad_epoch_raises():
    with pytest.raises(ValueError, match="epoch must be an integer >= 0, got -1"):
        BalancedBatchSampler(None, 2, num_samples=4).set_epoch(-1)


def test_suspicious_weights_warn():
    keys = ["a"] * 50 + ["b"] * 50
    with pytest.warns(UserWarning, match=r"weights give keys \['b'\] less than one sample per batch of 4"):
        BalancedBatchSampler(keys, 4, weights={"a": 20, "b": 1})
    with pytest.warns(UserWarning, match=r"weights name keys that no sample has, ignored: \['z'\]"):
        BalancedBatchSampler(keys, 4, weights={"a": 1, "b": 1, "z": 1})
    # Exactly one sample per batch is enough: no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BalancedBatchSampler(keys, 4, weights={"a": 3, "b": 1})


def test_missing_keys_are_a_stratum_of_their_own():
    # None and NaN both count as missing (pandas' view): one stratum, not an error.
    keys = ["a"] * 6 + [None] * 3 + [float("nan")] * 3
    sampler = BalancedBatchSampler(keys, 2)
    assert len(sampler.strata) == 2 and sampler.strata[0] == "a" and np.isnan(sampler.strata[1])
    batches = list(sampler)
    assert len(batches) == 6 and all(sorted(i >= 6 for i in b) == [False, True] for b in batches)


def test_batches_of_one_sample():
    sampler = BalancedBatchSampler(None, 1, num_samples=3)
    assert len(sampler) == 3 and sorted(i for b in sampler for i in b) == [0, 1, 2]


def test_composite_keys_join_columns():
    frame = pd.DataFrame({"label": [1, 0, 1], "age": ["60-80", None, "20-40"], "score": [0.5, 1.0, np.nan]})
    assert composite_keys(frame, ["label", "age"]).tolist() == ["1|60-80", "0|nan", "1|20-40"]
    assert composite_keys(frame, ["score"]).tolist() == ["0.5", "1.0", "nan"]
    assert composite_keys(frame, "label").tolist() == ["1", "0", "1"]


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (["label", "sex"], r"balance columns \['sex'\] are not in the table; its columns are \['label', 'group'\]"),
        ([], "^composite_keys needs at least one column, got none$"),
        (["group"], r"^column 'group' has values containing '\|' \(e\.g\. 'a\|b'\), which would make composite keys ambiguous$"),
    ],
)
def test_composite_keys_errors(columns, message):
    frame = pd.DataFrame({"label": [1, 0], "group": ["a|b", "c"]})
    with pytest.raises(ValueError, match=message):
        composite_keys(frame, columns)


def test_an_epoch_of_one_full_batch_is_filled_and_balanced():
    sampler = BalancedBatchSampler(["a"] * 3 + ["b"] * 2, 6)  # epoch: 2 keys x 3 = one batch of 6
    (batch,) = list(sampler)
    assert sorted(i < 3 for i in batch) == [False] * 3 + [True] * 3 and set(batch) == {0, 1, 2, 3, 4}


def test_the_largest_remainders_round_up_not_the_largest_shares():
    # Two full batches of 5 at shares 0.64/0.36: a's 6.4 rounds down, b's 3.6 up, every epoch.
    keys = ["a"] * 6 + ["b"] * 4
    sampler = BalancedBatchSampler(keys, 5, weights={"a": 64, "b": 36})
    for epoch in range(5):
        sampler.set_epoch(epoch)
        assert Counter(keys[i] for batch in sampler for i in batch) == {"a": 6, "b": 4}
