"""How sure a benchmark number is: intervals for accuracies and exact tests for paired before/after comparisons.

Small pure functions over plain sequences (no pandas), used by the tables of notebooks 05, 06 and 08:
- `wilson_interval(k, n)`: the Wilson score interval of a proportion k/n (one task's accuracy, MC1). Unlike the
  normal approximation it stays inside [0, 1] and is sensible for tiny n and for 0 or n correct.
- `bootstrap_macro_interval(groups)`: percentile bootstrap of the macro average (mean of per-task means), resampling
  items within each task with a fixed seed, so the interval reflects every task's own sample size; undefined ("n/a")
  when a task has a single item (its resamples cannot vary). With a handful of items per task the percentile
  bootstrap is too narrow; the per-task Wilson intervals are the honest guide there.
- `bootstrap_mean_interval(values)`: the same for one group (MC2, a continuous per-question score).
- `bootstrap_relative_change(before, after)`: paired percentile bootstrap of 100 * (mean(after) / mean(before) - 1),
  the paper's "relative improvement", over the same items.
- `mcnemar_exact(before, after)`: the exact McNemar test on paired right/wrong outcomes (same items, two systems):
  a two-sided binomial test of the discordant pairs (scipy.stats.binomtest, p = 0.5).
- `format_interval(lo, hi)`: "[lo, hi]" in percent for tables ("n/a" when undefined).

Proportions are fractions in [0, 1] in and out; tables multiply by 100.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["wilson_interval", "bootstrap_macro_interval", "bootstrap_mean_interval", "bootstrap_relative_change",
           "mcnemar_exact", "McNemar", "format_interval", "DEFAULT_SEED", "DEFAULT_BOOT"]

DEFAULT_SEED = 0
DEFAULT_BOOT = 2000


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"confidence level {level}: expected a number between 0 and 1")
    from scipy.stats import norm

    return float(norm.ppf(1 - (1 - level) / 2))


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of k successes in n trials; (nan, nan) when n == 0."""
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"wilson_interval: need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return math.nan, math.nan
    z = _z(level)
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def _percentiles(stats: np.ndarray, level: float) -> tuple[float, float]:
    stats = stats[~np.isnan(stats)]
    if stats.size == 0:
        return math.nan, math.nan
    alpha = (1 - level) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return float(lo), float(hi)


def _resampled_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    idx = rng.integers(0, values.size, size=(n_boot, values.size))
    return values[idx].mean(axis=1)


def bootstrap_macro_interval(groups: Sequence[Sequence[float]], level: float = 0.95, n_boot: int = DEFAULT_BOOT,
                             seed: int = DEFAULT_SEED, min_items: int = 2) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over groups of each group's mean (items resampled within groups).

    Empty groups are left out (as a task with no items has no accuracy). (nan, nan) when every group is empty or
    when a group has fewer than `min_items` items: resampling one item always returns that item, so the bootstrap
    would claim no uncertainty at all where there is the most.
    """
    _z(level)
    arrays = [np.asarray(g, dtype=float) for g in groups]
    arrays = [a for a in arrays if a.size]
    if not arrays or min(a.size for a in arrays) < min_items:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    macro = np.mean([_resampled_means(a, n_boot, rng) for a in arrays], axis=0)
    return _percentiles(macro, level)


def bootstrap_mean_interval(values: Sequence[float], level: float = 0.95, n_boot: int = DEFAULT_BOOT,
                            seed: int = DEFAULT_SEED, min_items: int = 2) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean (one group); (nan, nan) below `min_items` values."""
    return bootstrap_macro_interval([values], level, n_boot, seed, min_items)


def bootstrap_relative_change(before: Sequence[float], after: Sequence[float], level: float = 0.95,
                              n_boot: int = DEFAULT_BOOT, seed: int = DEFAULT_SEED, min_items: int = 2
                              ) -> tuple[float, float]:
    """Paired percentile interval of 100 * (mean(after) / mean(before) - 1), in percent.

    Items are resampled together (the same item for both systems); resamples where `before` scores 0 have no
    relative change and are left out. (nan, nan) with fewer than `min_items` items or when none of the resamples
    is defined.
    """
    _z(level)
    b, a = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    if b.shape != a.shape:
        raise ValueError(f"bootstrap_relative_change: {b.size} before vs {a.size} after values (must be paired)")
    if b.size == 0 or b.size < min_items:
        return math.nan, math.nan
    idx = np.random.default_rng(seed).integers(0, b.size, size=(n_boot, b.size))
    mb, ma = b[idx].mean(axis=1), a[idx].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(mb > 0, 100.0 * (ma / mb - 1.0), np.nan)
    return _percentiles(rel, level)


@dataclass(frozen=True)
class McNemar:
    """Paired comparison: n pairs, b = right before and wrong after, c = wrong before and right after, exact p."""

    n: int
    b: int
    c: int
    p_value: float


def mcnemar_exact(before: Sequence[bool], after: Sequence[bool]) -> McNemar:
    """Exact McNemar test of paired right/wrong outcomes; p = 1 when no pair disagrees."""
    if len(before) != len(after):
        raise ValueError(f"mcnemar_exact: {len(before)} before vs {len(after)} after outcomes (must be paired)")
    b = sum(1 for x, y in zip(before, after) if bool(x) and not bool(y))
    c = sum(1 for x, y in zip(before, after) if not bool(x) and bool(y))
    if b + c == 0:
        return McNemar(len(before), 0, 0, 1.0)
    from scipy.stats import binomtest

    return McNemar(len(before), b, c, float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue))


def format_interval(lo: float | None, hi: float | None, scale: float = 100.0, digits: int = 1) -> str:
    """"[lo, hi]" scaled (fractions to percent by default); "n/a" when either end is missing."""
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return "n/a"
    return f"[{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"
