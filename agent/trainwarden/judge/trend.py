"""The short-term loss trend: the mean of the last logged losses against the mean before them, and the slope
over the last 100. Pure."""

from __future__ import annotations

from trainwarden.judge.policy import Policy
from trainwarden.model import LossTrend


def loss_trend(losses: list[float], policy: Policy) -> LossTrend | None:
    """`losses` are finite (the snapshot's points hold finite values only)."""
    values = losses
    short_n = policy.loss_short_window
    if len(values) < short_n + 1:
        return None
    short = values[-short_n:]
    long = values[-short_n - policy.loss_long_window : -short_n]
    last = values[-policy.loss_slope_window:]
    n = len(last)
    mean_x = (n - 1) / 2
    mean_y = sum(last) / n
    var_x = n * (n * n - 1) / 12  # the sum of (x - mean_x)^2 over x = 0..n-1
    # deviations from the means, not sum(xy) - n*mx*my: a flat loss must give a slope of exactly 0, not -1e-17
    slope = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(last)) / var_x if var_x else 0.0
    short_mean, long_mean = sum(short) / len(short), sum(long) / len(long)
    return LossTrend(
        short_mean=short_mean,
        long_mean=long_mean,
        rise_ratio=short_mean / long_mean - 1 if long_mean > 0 else None,
        mean_100=mean_y,
        slope_per_log=slope,
        falling=slope < 0,
        values=n,
    )


def is_falling(trend: LossTrend | None) -> bool:
    """Falling over the last 100 and not rising in the short term."""
    return trend is not None and trend.falling and (trend.rise_ratio or 0) <= 0
