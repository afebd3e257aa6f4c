"""Balanced, distributed batch sampler over composite strata keys.

PyTorch has no sampler that is balanced and distributed at once
(pytorch/pytorch#77154): `WeightedRandomSampler` balances only in expectation and
cannot be split across ranks, `DistributedSampler` splits but does not balance.
`BalancedBatchSampler` does both: every batch holds each stratum at its share, and
all ranks carve disjoint batches out of one epoch plan that each of them rebuilds
from (seed, epoch) alone, so no communication is needed.
"""
from __future__ import annotations

import numbers
import warnings
from collections.abc import Hashable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

KEY_SEPARATOR = "|"
"""Joins the balance columns' values into one stratum key, e.g. ``"1|60-80"``."""

_MISSING = "nan"


def composite_keys(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """One stratum key per row: the columns' values as text, joined by ``"|"``.

    ``composite_keys(labels, ["label", "age_group"])`` gives keys like ``"1|60-80"``,
    ready for `BalancedBatchSampler`. Values are formatted with ``str`` (a label
    column read as float gives ``"1.0"``); a missing value becomes ``"nan"``, a
    stratum of its own. Returns an object array of Python strings, one per row.
    """
    if isinstance(columns, str):
        columns = [columns]
    if not columns:
        raise ValueError("composite_keys needs at least one column, got none")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"balance columns {missing} are not in the table; its columns are {list(frame.columns)}")
    texts = [_key_text(frame[column], column) for column in columns]
    joined = texts[0]
    for text in texts[1:]:
        joined = joined + KEY_SEPARATOR + text
    return joined.to_numpy(dtype=object)


def _key_text(values: pd.Series, column: str) -> pd.Series:
    # pandas 3 keeps missing values missing through astype(str); name them explicitly
    # so that a row with a missing value still gets a key.
    text = values.astype(str).where(values.notna(), _MISSING)
    clashing = text[text.str.contains(KEY_SEPARATOR, regex=False)]
    if len(clashing):
        raise ValueError(
            f"column {column!r} has values containing {KEY_SEPARATOR!r} (e.g. {clashing.iloc[0]!r}), "
            "which would make composite keys ambiguous"
        )
    return text


class BalancedBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Yields batches of dataset indices in which every stratum holds its share.

    Use it as ``DataLoader(dataset, batch_sampler=sampler)`` and call
    ``sampler.set_epoch(epoch)`` before each epoch, as with `DistributedSampler`.

    Strata and shares
        ``keys[i]`` is the stratum of sample ``i`` (see `composite_keys`). Stratum
        ``k`` has the share ``p_k = w_k / sum(w)`` of every batch: equal weights
        unless ``weights`` maps every key to a positive weight. In each batch of
        size ``b`` a stratum holds ``floor(b * p_k)`` or ``ceil(b * p_k)`` samples, so
        with equal weights the counts of any two keys differ by at most one. Which
        strata get the rounded-up slots rotates across the epoch's batches
        (wrap-around assignment in a fresh random key order each epoch) so that
        over an epoch each stratum's total is its share of the epoch, rounded.
        ``keys=None`` is one stratum: plain shuffled batching.

    Epoch length
        An epoch is the shortest stream at these shares that shows every sample
        at least once: ``S = max_k(n_k / p_k)`` samples, where ``n_k`` is the size of
        stratum ``k``; with equal weights ``S = n_keys * n_largest``. With weights
        ``S`` is capped at ``n_keys * n_largest`` too, so that a large stratum with a
        small weight cannot stretch the epoch to many passes over the data (its
        samples are then shown without repeats but not all of them in one epoch).
        Hence an epoch has at most ``n_keys`` times as many samples as the dataset.
        That is ``S // batch_size`` full batches; with ``drop_last=False`` one final
        partial batch holds the remaining ``S % batch_size`` samples, itself balanced
        as evenly as its size allows.

    Repeats
        A stratum with at least its share of the epoch (the largest one, above
        all) is drawn without replacement: each of its samples appears at most once
        per epoch. Smaller strata are re-drawn: they cycle through their samples,
        reshuffled each cycle, so a sample repeats only after all of its stratum
        has been shown. (A sample can then appear twice in one batch only when its
        stratum is smaller than its share of a batch, or where two cycles meet.)
        The order inside each batch is shuffled too, so that any contiguous slice
        of a batch (micro-batches, `DataParallel` scatter) is mixed as well.

    Distributed
        Every rank builds the same plan from ``(seed, epoch)``; global batch ``i``
        goes to rank ``i % num_replicas``, so ranks get disjoint batches. Every rank
        yields the same number of batches, which keeps DDP from hanging: with
        ``drop_last=True`` the plan's tail is cut to a multiple of ``num_replicas``
        full batches; with ``drop_last=False`` it is padded with extra balanced
        batches (re-drawn, so there samples of every stratum may repeat). Either way
        the plan is the single-replica plan, cut or extended.

    Determinism
        The plan depends only on the keys, batch size, weights, ``seed`` and
        ``epoch`` (a `numpy.random.Generator` seeded with ``[seed, epoch]``; no
        global random state), so it is identical across ranks and reruns, and
        changes with every epoch.
    """

    def __init__(
        self,
        keys: Sequence[Hashable] | np.ndarray | None,
        batch_size: int,
        *,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        drop_last: bool = True,
        weights: Mapping[Hashable, float] | None = None,
        num_samples: int | None = None,
    ) -> None:
        """Check the arguments and fix the epoch's shape; the plan itself is built per epoch.

        Args:
            keys: one stratum key per dataset sample (any hashables, e.g. from
                `composite_keys`); ``None`` for plain shuffling of ``num_samples``.
            batch_size: samples per batch; when balancing, at least the number of keys.
            num_replicas: number of ranks sharing the epoch (DDP world size).
            rank: this rank, ``0 <= rank < num_replicas``.
            seed: root seed of the plan, shared by all ranks; ``>= 0``.
            drop_last: drop the final partial batch (and cut to a multiple of
                ``num_replicas``) instead of keeping it (and padding).
            weights: positive weight per key; shares are proportional to them.
                Every key in ``keys`` needs one. ``None``: equal shares.
            num_samples: dataset size, needed (only) when ``keys`` is ``None``.
        """
        super().__init__()
        _require_int("batch_size", batch_size, minimum=1)
        _require_int("num_replicas", num_replicas, minimum=1)
        _require_int("seed", seed, minimum=0)
        if not isinstance(rank, numbers.Integral) or not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be an integer in [0, num_replicas={num_replicas}), got {rank!r}")
        self.batch_size = int(batch_size)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.epoch = 0

        codes, strata = _factorize(keys, num_samples, weights)
        self.strata: tuple[Hashable, ...] = strata  # distinct keys in order of first appearance; (None,) for keys=None
        n_keys = len(strata)
        if n_keys > self.batch_size:
            raise ValueError(
                f"batch_size={self.batch_size} cannot hold one sample of each of the {n_keys} keys; "
                f"use batch_size >= {n_keys} or balance on fewer columns"
            )
        self._weights = _weights_for(strata, weights)
        low = self._quotas(self.batch_size) < 1
        if low.any():
            warnings.warn(
                f"weights give keys {[strata[k] for k in np.flatnonzero(low)]} less than one sample per batch "
                f"of {self.batch_size}; they will be missing from some batches",
                stacklevel=2,
            )

        # Index pools per stratum; int32 where it fits makes shuffling and tolist() faster.
        dtype = np.int32 if codes.size < 2**31 else np.int64
        order = np.argsort(codes, kind="stable").astype(dtype)
        self._sizes = np.bincount(codes, minlength=n_keys)
        self._pools = np.split(order, np.cumsum(self._sizes)[:-1])

        # Epoch length (class docstring): show every sample at least once, capped at
        # n_keys * n_largest so a small weight on a large stratum cannot blow it up.
        total_weight = self._weights.sum()
        epoch_samples = min(
            int(np.floor(np.round(np.max(self._sizes * total_weight / self._weights), 9))),
            n_keys * int(self._sizes.max()),
        )
        self.epoch_samples = epoch_samples
        """Samples in one epoch over all replicas; with drop_last=True, a batch size above
        ``epoch_samples // num_replicas`` leaves a replica without one full batch."""
        self._n_full = epoch_samples // self.batch_size
        # Every rank must yield as many batches as the others: the plan is the
        # single-replica plan, cut (drop_last) or padded to a multiple of num_replicas.
        if self.drop_last:
            self._tail_size = 0
            self._n_cut = self._n_full % self.num_replicas
            self._n_pad = 0
            if self._n_full - self._n_cut == 0:
                raise ValueError(
                    f"an epoch holds {epoch_samples} samples, too few for one full batch of {self.batch_size} "
                    f"on each of {self.num_replicas} replicas with drop_last=True; "
                    "lower batch_size or use drop_last=False"
                )
        else:
            self._tail_size = epoch_samples % self.batch_size
            self._n_cut = 0
            self._n_pad = -(self._n_full + (self._tail_size > 0)) % self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose plan `__iter__` yields; each epoch has its own order."""
        _require_int("epoch", epoch, minimum=0)
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Batches this rank yields per epoch (the same on every rank)."""
        return (self._n_full - self._n_cut + self._n_pad + (self._tail_size > 0)) // self.num_replicas

    def __iter__(self) -> Iterator[list[int]]:
        """This rank's batches of the current epoch, as lists of dataset indices."""
        full, tail = self._plan()
        for row in full[: len(full) - self._n_cut][self.rank :: self.num_replicas]:
            yield row.tolist()
        # The tail is the last global batch; padding made the batch count a multiple
        # of num_replicas, so it falls to the last rank.
        if tail.size and self.rank == self.num_replicas - 1:
            yield tail.tolist()

    def _quotas(self, total: int) -> np.ndarray:
        """Each stratum's exact share of `total` samples, float noise rounded away so
        that shares like 0.1/0.2/0.7 of 10 come out as whole numbers."""
        return np.round(total * self._weights / self._weights.sum(), 9)

    def _plan(self) -> tuple[np.ndarray, np.ndarray]:
        """All ranks' batches of this epoch: the full batches ([n, batch_size]: the
        epoch's, then any padding) and the final partial batch (maybe empty)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        batch_size = self.batch_size
        full_quota = self._quotas(self._n_full * batch_size)
        full = _largest_remainder(rng, full_quota, self._n_full * batch_size)
        tail_quota = self._quotas(self._tail_size)
        # A stratum drawn without repeats must stay so through the tail: its tail
        # share is capped at what the full batches left unseen. (For such strata
        # that is never below floor(tail_quota), so the rounding stays feasible.)
        no_repeats = self._sizes >= full_quota + tail_quota
        tail_cap = np.where(no_repeats, np.minimum(np.ceil(tail_quota), self._sizes - full), np.ceil(tail_quota))
        # The tail's rounded-up slots go first to strata the full batches rounded
        # down, so that epoch totals stay as even as the shares.
        deficit = full_quota + tail_quota - full - np.floor(tail_quota)
        tail = _largest_remainder(rng, tail_quota, self._tail_size, upper=tail_cap, priority=deficit)

        streams = [_cycle(rng, pool, f + t) for pool, f, t in zip(self._pools, full, tail)]
        batches = np.empty((self._n_full + self._n_pad, batch_size), dtype=self._pools[0].dtype)
        main = batches[: self._n_full]
        _fill(rng, main, full, [s[:f] for s, f in zip(streams, full)])
        rng.permuted(main, axis=1, out=main)
        tail_batch = rng.permutation(np.concatenate([s[f:] for s, f in zip(streams, full)]))
        # Padding comes last, from fresh draws, so the epoch's own batches are the
        # same whatever the number of replicas.
        pad_total = self._n_pad * batch_size
        pad = _largest_remainder(rng, self._quotas(pad_total), pad_total)
        padding = batches[self._n_full :]
        _fill(rng, padding, pad, [_cycle(rng, pool, p) for pool, p in zip(self._pools, pad)])
        rng.permuted(padding, axis=1, out=padding)
        return batches, tail_batch


def _require_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _factorize(
    keys: Sequence[Hashable] | np.ndarray | None,
    num_samples: int | None,
    weights: Mapping[Hashable, float] | None,
) -> tuple[np.ndarray, tuple[Hashable, ...]]:
    """Stratum code per sample (0..n_keys-1) and the distinct keys, in order of first appearance."""
    if keys is None:
        if weights is not None:
            raise ValueError("weights need keys: with keys=None there is only one stratum")
        _require_int("num_samples", num_samples, minimum=1)
        return np.zeros(int(num_samples), dtype=np.intp), (None,)
    if num_samples is not None and num_samples != len(keys):
        raise ValueError(f"num_samples={num_samples} does not match len(keys)={len(keys)}")
    if isinstance(keys, (pd.Series, pd.Index)):
        keys = keys.to_numpy()
    if isinstance(keys, np.ndarray):
        if keys.ndim != 1:
            raise ValueError(f"keys must be one-dimensional (one key per sample), got shape {keys.shape}")
        values = keys
    else:
        # fromiter keeps tuple keys whole instead of turning them into a 2-D array.
        values = np.fromiter(keys, dtype=object, count=len(keys))
    if values.size == 0:
        raise ValueError("keys is empty: the dataset has no samples")
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    return codes, tuple(uniques.tolist())


def _weights_for(strata: tuple[Hashable, ...], weights: Mapping[Hashable, float] | None) -> np.ndarray:
    if weights is None:
        return np.ones(len(strata))
    missing = [k for k in strata if k not in weights]
    if missing:
        raise ValueError(f"weights have no entry for keys {missing}; every key needs a weight (keys: {list(strata)})")
    values = np.array([weights[k] for k in strata], dtype=float)
    bad = {k: weights[k] for k, w in zip(strata, values) if not (np.isfinite(w) and w > 0)}
    if bad:
        raise ValueError(f"weights must be positive and finite, got {bad}")
    known = set(strata)
    unused = [k for k in weights if k not in known]
    if unused:
        warnings.warn(f"weights name keys that no sample has, ignored: {unused}", stacklevel=3)
    return values


def _largest_remainder(
    rng: np.random.Generator,
    quotas: np.ndarray,
    total: int,
    *,
    upper: np.ndarray | None = None,
    priority: np.ndarray | None = None,
) -> np.ndarray:
    """Integer counts summing to `total`, each the floor or ceil of its quota (and at
    most `upper`). The largest remainders (or `priority`) round up first; ties are
    broken at random so that no stratum is favoured epoch after epoch."""
    counts = np.floor(quotas).astype(np.int64)
    if priority is None:
        priority = quotas - counts
    eligible = np.ones(len(quotas), dtype=bool) if upper is None else counts < upper
    order = np.lexsort((rng.permutation(len(quotas)), -priority))
    order = order[eligible[order]]
    counts[order[: total - counts.sum()]] += 1
    return counts


def _cycle(rng: np.random.Generator, pool: np.ndarray, count: int) -> np.ndarray:
    """`count` draws from `pool`: whole reshuffled passes, so repeats only start once
    every sample of the pool has been drawn."""
    passes = -(-int(count) // pool.size)
    deck = np.tile(pool, (passes, 1))
    rng.permuted(deck, axis=1, out=deck)
    return deck.reshape(-1)[:count]


def _fill(rng: np.random.Generator, batches: np.ndarray, totals: np.ndarray, draws: list[np.ndarray]) -> None:
    """Deal each stratum's draws (``totals[k]`` of them) into the rows of `batches`,
    every row getting ``floor`` or ``ceil`` of ``totals[k] / n_rows`` of stratum k."""
    n_rows, batch_size = batches.shape
    if n_rows == 0:
        return
    n_keys = len(totals)
    base, extra = np.divmod(totals, n_rows)
    # Wrap-around (McNaughton) assignment of the rounded-up slots: lay them out key
    # after key and deal them to rows round-robin. A key has fewer than n_rows extras,
    # so no row gets two of one key's; every row gets the same number, since the
    # extras add up to a multiple of n_rows.
    key_order = rng.permutation(n_keys)
    extra_keys = np.repeat(key_order, extra[key_order])
    counts = np.tile(base, (n_rows, 1))
    counts[np.arange(extra_keys.size) % n_rows, extra_keys] += 1
    # Rows go to batches in random order, so that the run of rows sharing a key's
    # extras is scattered over the epoch.
    row_of = rng.permutation(n_rows)
    starts = row_of[:, None] * batch_size + (np.cumsum(counts, axis=1) - counts)
    # Each (key, row) segment of the key-major draws goes to its slot range.
    lengths = counts.T.reshape(-1)
    starts = starts.T.reshape(-1) - (np.cumsum(lengths) - lengths)
    positions = np.repeat(starts, lengths) + np.arange(lengths.sum())
    batches.reshape(-1)[positions] = np.concatenate(draws)
