"""Packing samples into fixed-length training sequences, and turning a packing into model inputs.

Two packers, one result type (`PackedPlan`: per sequence, its sample indices in order, plus the lengths):
- `pack_paper(lengths, max_len, seed)`: the paper's method (Orca §3.2): shuffle the samples, then fill sequences
  in that order, starting a new sequence when the next sample does not fit (next-fit). Each sequence is padded to
  max_len; the paper reports about 2.7 samples per sequence on its data.
- `pack_best_fit(lengths, max_len)`: best-fit decreasing (BFD): longest sample first, each into the open sequence
  with the least room that still fits it. Lengths are bounded integers, so it runs over a histogram of lengths and
  of remaining room, moving whole groups of interchangeable sequences at a time: 5M lengths pack in about a second.
  Within a length, samples keep their input order (deterministic, no seed needed).
- `pack_exact_fit(lengths, max_len)`: sequence by sequence (largest remaining sample first), completes each room
  exactly when it can: one sample of exactly the room's size, else the most balanced pair summing to it, else the
  largest sample that leaves room for the smallest one left. Keeping sequences exactly full saves the small samples
  for the rooms only they can fill, which BFD spends early. Also on the length histogram, groups of identical rooms
  at a time. It then runs BFD too and keeps the plan with fewer sequences, so it is never worse than BFD. On 1M
  augmented-like lengths at 2,048 (`benchmarks/packing.py`): 0.01% above ceil(tokens / max_len), BFD 0.25%.

`packed_inputs(plan, samples, seqs)` concatenates the tokenized samples of some sequences into `input_ids`, `labels`,
`position_ids` that restart at 0 for every sample, and `cu_seqlens` (the sample boundaries). Attention isolation:
pass `position_ids` WITHOUT an `attention_mask` and with `use_cache=False` (training) to a transformers model:
it detects the restarts and builds a block-diagonal causal mask (`masking_utils.find_packed_sequence_indices`);
flash-attention kernels take `cu_seqlens` directly. The padding tail is one more segment (its own positions from 0,
labels -100).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .tokens import IGNORE_INDEX, TokenizedSamples

__all__ = ["PackedPlan", "lower_bound_sequences", "pack_best_fit", "pack_exact_fit", "pack_lengths", "pack_paper",
           "packed_inputs"]


@dataclass
class PackedPlan:
    """Sequence s holds samples `order[seq_offsets[s]:seq_offsets[s+1]]`, in that order.

    `lengths` are the lengths of ALL input samples (indexed by sample id); `dropped` the ids of samples longer than
    max_len that were left out (`oversize="drop"`).
    """

    order: np.ndarray
    seq_offsets: np.ndarray
    lengths: np.ndarray
    max_len: int
    method: str
    dropped: np.ndarray

    @property
    def n_sequences(self) -> int:
        return len(self.seq_offsets) - 1

    @property
    def n_samples(self) -> int:
        return len(self.order)

    def sequence(self, s: int) -> np.ndarray:
        return self.order[self.seq_offsets[s]:self.seq_offsets[s + 1]]

    @property
    def sequence_lengths(self) -> np.ndarray:
        """Tokens (not padding) per sequence."""
        csum = np.concatenate([[0], np.cumsum(self.lengths[self.order])])
        return csum[self.seq_offsets[1:]] - csum[self.seq_offsets[:-1]]

    @property
    def samples_per_sequence(self) -> np.ndarray:
        return np.diff(self.seq_offsets)

    @property
    def total_tokens(self) -> int:
        return int(self.lengths[self.order].sum())

    @property
    def packing_factor(self) -> float:
        """Samples per sequence (the paper's 2.7)."""
        return self.n_samples / max(self.n_sequences, 1)

    @property
    def padding_fraction(self) -> float:
        """Share of the n_sequences * max_len positions that are padding."""
        return 1.0 - self.total_tokens / max(self.n_sequences * self.max_len, 1)

    @property
    def lower_bound(self) -> int:
        return lower_bound_sequences(self.lengths[self.order], self.max_len)

    def cu_seqlens(self, s: int) -> np.ndarray:
        """Sample boundaries inside sequence s: [0, l0, l0+l1, ...] (without the padding tail)."""
        return np.concatenate([[0], np.cumsum(self.lengths[self.sequence(s)])])

    def summary(self) -> dict[str, float | int | str]:
        return {"method": self.method, "max_len": self.max_len, "samples": self.n_samples,
                "sequences": self.n_sequences, "lower_bound": self.lower_bound,
                "packing_factor": self.packing_factor, "padding_fraction": self.padding_fraction,
                "dropped": len(self.dropped)}


def lower_bound_sequences(lengths: np.ndarray, max_len: int) -> int:
    """ceil(total tokens / max_len): no packing can use fewer sequences."""
    return int(-(-int(np.asarray(lengths).sum()) // max_len))


def _checked(lengths, max_len: int, oversize: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(f"lengths must be a 1-D integer array, got shape {lengths.shape} dtype {lengths.dtype}")
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    lengths = lengths.astype(np.int64)
    if (lengths < 1).any():
        bad = np.flatnonzero(lengths < 1)
        raise ValueError(f"{len(bad)} sample(s) have length < 1 (first ids {bad[:5].tolist()})")
    over = lengths > max_len
    if over.any() and oversize != "drop":
        bad = np.flatnonzero(over)
        raise ValueError(f"{len(bad)} sample(s) are longer than max_len={max_len} (first ids {bad[:5].tolist()}, "
                         f"longest {int(lengths.max())}): truncate them when tokenizing, or pass oversize='drop'")
    return lengths, np.flatnonzero(~over), np.flatnonzero(over)


def _stable_argsort(keys: np.ndarray) -> np.ndarray:
    """`np.argsort(keys, kind="stable")` for non-negative integer keys, as radix sorts on 16-bit digits.

    NumPy radix-sorts 16-bit keys; on millions of keys two such passes take a third of one int64 stable sort.
    """
    if not len(keys) or int(keys.max()) >= 1 << 32:
        return np.argsort(keys, kind="stable")
    order = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    if int(keys.max()) >= 1 << 16:
        order = order[np.argsort((keys[order] >> 16).astype(np.uint16), kind="stable")]
    return order


def pack_paper(lengths, max_len: int = 2048, seed: int = 0,
               oversize: Literal["error", "drop"] = "error") -> PackedPlan:
    """The paper's packing: shuffle (with `seed`), then fill each sequence in order up to max_len (next-fit)."""
    lengths, ok, dropped = _checked(lengths, max_len, oversize)
    order = ok[np.random.default_rng(seed).permutation(len(ok))]
    csum = np.concatenate([[0], np.cumsum(lengths[order])]).tolist()
    cuts, start, n = [0], 0, len(order)
    while start < n:      # one bisect per sequence: ~1 s for 5M samples
        start = bisect.bisect_right(csum, csum[start] + max_len, lo=start + 1) - 1
        cuts.append(start)
    return PackedPlan(order, np.asarray(cuts, dtype=np.int64), lengths, max_len, "paper (shuffle, fill in order)",
                      dropped)


def pack_best_fit(lengths, max_len: int = 2048, oversize: Literal["error", "drop"] = "error") -> PackedPlan:
    """Best-fit decreasing over a histogram of lengths: the same fills as item-by-item BFD, in seconds for millions.

    Sequences with the same remaining room are interchangeable, so they sit in one stack per room value. For items
    of size s, BFD picks the smallest room r >= s; since no room lies between s and r, that sequence keeps taking
    items of size s until its room drops below s, i.e. floor(r / s) of them. Each step moves whole groups.
    """
    lengths, ok, dropped = _checked(lengths, max_len, oversize)
    by_size = ok[_stable_argsort(max_len - lengths[ok])]            # decreasing size, ties in input order
    sizes, first = np.unique(-lengths[by_size], return_index=True)
    bounds = np.append(first, len(by_size))
    count = np.zeros(max_len + 1, dtype=np.int64)                   # open sequences per remaining room
    stacks: list[list[np.ndarray]] = [[] for _ in range(max_len + 1)]
    item_parts: list[np.ndarray] = []
    seq_parts: list[np.ndarray] = []
    n_seq = 0

    def take(r: int, k: int) -> np.ndarray:
        got, need = [], k
        while need:
            top = stacks[r][-1]
            if len(top) <= need:
                got.append(stacks[r].pop())
                need -= len(top)
            else:
                got.append(top[-need:])
                stacks[r][-1] = top[:-need]
                need = 0
        count[r] -= k
        return np.concatenate(got) if len(got) > 1 else got[0]

    def put(r: int, seqs: np.ndarray) -> None:
        if r > 0 and len(seqs):
            stacks[r].append(seqs)
            count[r] += len(seqs)

    for g, neg_size in enumerate(sizes):
        s = int(-neg_size)
        items = by_size[bounds[g]:bounds[g + 1]]
        done = 0
        while done < len(items):
            left = len(items) - done
            open_rooms = np.flatnonzero(count[s:])
            if len(open_rooms):
                r = s + int(open_rooms[0])
                seqs = take(r, min(count[r], -(-left // (r // s))))
            else:
                r = max_len
                seqs = np.arange(n_seq, n_seq + -(-left // (r // s)), dtype=np.int64)
                n_seq += len(seqs)
            per = r // s                                            # items each sequence takes
            full = min(len(seqs), left // per)
            fill = np.concatenate([np.repeat(seqs[:full], per), seqs[full:full + 1].repeat(left - full * per)])
            fill = fill[:left]
            item_parts.append(items[done:done + len(fill)])
            seq_parts.append(fill)
            done += len(fill)
            put(r - per * s, seqs[:full])
            if full < len(seqs):
                put(r - (left - full * per) * s, seqs[full:])
    return _plan(item_parts, seq_parts, n_seq, lengths, max_len, "best-fit decreasing", dropped)


def _plan(item_parts: list[np.ndarray], seq_parts: list[np.ndarray], n_seq: int, lengths: np.ndarray, max_len: int,
          method: str, dropped: np.ndarray) -> PackedPlan:
    """Plan from placements (item_parts[i][j] goes into sequence seq_parts[i][j]), kept in placement order."""
    items = np.concatenate(item_parts) if item_parts else np.zeros(0, dtype=np.int64)
    seq_of = np.concatenate(seq_parts) if seq_parts else np.zeros(0, dtype=np.int64)
    rank = _stable_argsort(seq_of)                                   # within a sequence: placement order
    offsets = np.zeros(n_seq + 1, dtype=np.int64)
    np.cumsum(np.bincount(seq_of, minlength=n_seq), out=offsets[1:])
    return PackedPlan(items[rank], offsets, lengths, max_len, method, dropped)


EXACT_FIT = "exact-fit (pair completion, never worse than BFD)"


def pack_exact_fit(lengths, max_len: int = 2048, oversize: Literal["error", "drop"] = "error") -> PackedPlan:
    """Fill each sequence exactly where the remaining samples allow; fall back to BFD where that packs tighter.

    Sequences are opened for all samples of the largest remaining length at once (identical rooms, one group). A
    group with room r takes, for as many of its sequences as the counts allow: a sample of length r (done); else
    the pair (a, r - a) of available lengths with a >= r/2 closest to r/2 (done); else the largest a with
    r - a >= the smallest length left (room r - a, continue). Groups split when a length runs out, so the number
    of steps is a few per distinct length, each one vector operation over at most max_len counts.
    """
    lengths, ok, dropped = _checked(lengths, max_len, oversize)
    by_size = ok[_stable_argsort(max_len - lengths[ok])]            # decreasing size, ties in input order
    cnt = np.bincount(lengths[ok], minlength=max_len + 1).astype(np.int64)
    head = np.zeros(max_len + 1, dtype=np.int64)                     # next unused sample of each length:
    head[:-1] = np.cumsum(cnt[::-1])[::-1][1:]                       # after all samples longer than it
    item_parts: list[np.ndarray] = []
    seq_parts: list[np.ndarray] = []
    n_seq = 0

    def place(size: int, seqs: np.ndarray, per: int = 1) -> None:
        k = len(seqs) * per
        item_parts.append(by_size[head[size]:head[size] + k])
        seq_parts.append(np.repeat(seqs, per) if per > 1 else seqs)
        head[size] += k
        cnt[size] -= k

    for size in range(max_len, 0, -1):
        if not cnt[size]:
            continue
        seqs = np.arange(n_seq, n_seq + cnt[size], dtype=np.int64)
        n_seq += len(seqs)
        place(size, seqs)
        stack = [(max_len - size, seqs)]
        while stack:
            r, seqs = stack.pop()
            if r == 0 or not len(seqs):
                continue
            if cnt[r]:                                               # one sample fills the room
                n = min(len(seqs), int(cnt[r]))
                place(r, seqs[:n])
                stack.append((r, seqs[n:]))
                continue
            avail = cnt[:r + 1] > 0
            half = (r + 1) // 2
            pairs = np.flatnonzero(avail[half:r] & avail[1:r - half + 1][::-1])   # a = half + i, b = r - a
            if len(pairs) and half + pairs[0] == r - half - pairs[0] and cnt[half + pairs[0]] < 2:
                pairs = pairs[1:]                                    # a == b needs two samples of that length
            if len(pairs):                                           # the most balanced pair fills the room
                a = half + int(pairs[0])
                b = r - a
                n = min(len(seqs), int(cnt[a] // 2) if a == b else int(min(cnt[a], cnt[b])))
                if a == b:
                    place(a, seqs[:n], per=2)
                else:
                    place(a, seqs[:n])
                    place(b, seqs[:n])
                stack.append((r, seqs[n:]))
                continue
            sizes_left = np.flatnonzero(avail)
            if not len(sizes_left):                                  # nothing fits: the room stays padding
                continue
            smallest = int(np.flatnonzero(cnt)[0])
            leave = sizes_left[r - sizes_left >= smallest]
            a = int(leave[-1] if len(leave) else sizes_left[-1])
            n = min(len(seqs), int(cnt[a]))
            place(a, seqs[:n])
            stack.append((r, seqs[n:]))
            stack.append((r - a, seqs[:n]))
    if n_seq > _bfd_sequence_count(np.bincount(lengths[ok], minlength=max_len + 1), max_len):
        bfd = pack_best_fit(lengths, max_len, oversize=oversize)
        bfd.method = EXACT_FIT
        return bfd
    return _plan(item_parts, seq_parts, n_seq, lengths, max_len, EXACT_FIT, dropped)


def _bfd_sequence_count(counts: np.ndarray, max_len: int) -> int:
    """How many sequences `pack_best_fit` opens for a length histogram (its steps on counts only, no sample ids)."""
    rooms = np.zeros(max_len + 1, dtype=np.int64)                    # open sequences per remaining room
    n_seq = 0
    for s in range(max_len, 0, -1):
        left = int(counts[s])
        while left:
            open_rooms = np.flatnonzero(rooms[s:])
            r = s + int(open_rooms[0]) if len(open_rooms) else max_len
            per = r // s
            k = -(-left // per)
            if len(open_rooms):
                k = min(k, int(rooms[r]))
                rooms[r] -= k
            else:
                n_seq += k
            full = min(k, left // per)
            rooms[r - per * s] += full
            if full < k:
                rooms[r - (left - full * per) * s] += k - full
            left -= min(left, k * per)
        rooms[0] = 0
    return n_seq


def pack_lengths(lengths, max_len: int = 2048, method: Literal["paper", "best_fit", "exact_fit"] = "best_fit",
                 seed: int = 0, oversize: Literal["error", "drop"] = "error") -> PackedPlan:
    """Dispatch by name: `method="paper"`, `"best_fit"` or `"exact_fit"`."""
    if method == "paper":
        return pack_paper(lengths, max_len, seed=seed, oversize=oversize)
    if method == "best_fit":
        return pack_best_fit(lengths, max_len, oversize=oversize)
    if method == "exact_fit":
        return pack_exact_fit(lengths, max_len, oversize=oversize)
    raise ValueError(f"packing method {method!r}: expected 'paper', 'best_fit' or 'exact_fit'")


def packed_inputs(plan: PackedPlan, samples: TokenizedSamples, seqs=None, pad_token_id: int | None = None,
                  pad_to_max_len: bool = True) -> dict[str, object]:
    """Model inputs for sequences `seqs` of `plan` (default: all): arrays of shape (len(seqs), width).

    Returns `input_ids`, `labels` (-100 on prompts and padding), `position_ids` (restart at 0 per sample; the
    padding tail counts from 0 as its own segment), `attention_mask` (1 on real tokens; for a padding-aware
    collator, NOT for isolation) and `cu_seqlens` (a list, per row, of the sample boundaries incl. 0 and the total).
    width = plan.max_len when `pad_to_max_len`, else the longest selected sequence.
    """
    if len(samples) != len(plan.lengths) or not np.array_equal(samples.lengths, plan.lengths):
        raise ValueError("packed_inputs: the plan was not made from these samples' lengths "
                         f"({len(plan.lengths)} planned, {len(samples)} tokenized)")
    pad = samples.pad_token_id if pad_token_id is None else pad_token_id
    if pad is None:
        raise ValueError("packed_inputs: no pad token id (use orca_utils.tokens.load_padded_tokenizer)")
    seqs = np.arange(plan.n_sequences) if seqs is None else np.atleast_1d(np.asarray(seqs, dtype=np.int64))
    seq_lens = plan.sequence_lengths[seqs]
    width = plan.max_len if pad_to_max_len else int(seq_lens.max(initial=1))
    input_ids = np.full((len(seqs), width), pad, dtype=np.int64)
    labels = np.full((len(seqs), width), IGNORE_INDEX, dtype=np.int64)
    position_ids = np.tile(np.arange(width, dtype=np.int64), (len(seqs), 1))
    attention_mask = np.zeros((len(seqs), width), dtype=np.int64)
    all_labels = samples.labels_flat()
    cu = []
    for row, s in enumerate(seqs.tolist()):
        ids = plan.sequence(s)
        starts, ends = samples.offsets[ids], samples.offsets[ids + 1]
        lens = ends - starts
        gather = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends)]) if len(ids) else np.zeros(0, int)
        n = len(gather)
        input_ids[row, :n] = samples.input_ids[gather]
        labels[row, :n] = all_labels[gather]
        bounds = np.concatenate([[0], np.cumsum(lens)])
        position_ids[row, :n] = np.arange(n) - np.repeat(bounds[:-1], lens)
        position_ids[row, n:] = np.arange(width - n)
        attention_mask[row, :n] = 1
        cu.append(bounds)
    return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids,
            "attention_mask": attention_mask, "cu_seqlens": cu}
