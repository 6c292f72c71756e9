"""Summary statistics of N runs: median, min, max and the interquartile range, and ratios of medians."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    min: float
    max: float
    q1: float
    q3: float

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1


def quantile(sorted_values, q):
    """The q-quantile (0 <= q <= 1) of already sorted values, linear between closest ranks (Hyndman & Fan type 7,
    the default of R, NumPy and Python's statistics.quantiles(method="inclusive"))."""
    if not sorted_values:
        raise ValueError("quantile of no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError("quantile %r: must be within 0..1" % q)
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


def summarize(values) -> Summary | None:
    """Summary of the values (None for no values: a side that never produced the figure)."""
    vals = sorted(float(v) for v in values)
    if not vals:
        return None
    return Summary(len(vals), quantile(vals, 0.5), vals[0], vals[-1], quantile(vals, 0.25), quantile(vals, 0.75))


def ratio(ours: Summary | None, peer: Summary | None) -> float | None:
    """ours.median / peer.median, or None when either side is missing or the peer's median is 0."""
    if ours is None or peer is None or peer.median == 0:
        return None
    return ours.median / peer.median


def slope(points):
    """Least-squares slope of [(x, y)]; None with fewer than two distinct x."""
    xs = [x for x, _ in points]
    if len(set(xs)) < 2:
        return None
    n = len(points)
    mx = sum(xs) / n
    my = sum(y for _, y in points) / n
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x in xs)
