"""The loss against itself: the short-term trend (the mean of the last logged losses against the mean before them,
and the slope over the last 100), and the run's own level before its latest loss (its median and minimum over the
whole run) that an explosion is measured against. Pure."""

from __future__ import annotations

from trainwarden.judge.policy import Policy
from trainwarden.model import LossHistory, LossTrend, RunSnapshot
from trainwarden.model.values import median


def attempt_start(snap: RunSnapshot) -> float | None:
    """When the current attempt began, when the work dir holds an earlier one: the start of the latest session that
    is not a resume (training again into the same work dir starts from a high loss again). None: one attempt."""
    resumed = {r.session for r in snap.resumes}
    starts = [s.start_timestamp for s in snap.sessions if s.id not in resumed and s.start_timestamp is not None]
    return max(starts) if len(starts) > 1 else None


def loss_history(snap: RunSnapshot, policy: Policy) -> LossHistory:
    """The finite logged losses before the latest one, over the whole run (its thinned long-range history and the
    recent window; resumed sessions included, an earlier attempt in the same work dir not). The median is the run's
    own level: robust to warm-up spikes and to a few outliers, and it only counts once `loss_explosion_min_points`
    losses are in. A negative loss (a GAN's, a log-likelihood's) says the scale is not a positive loss, and a median
    of 0 is no level: no median then, so no explosion measured against it."""
    latest = snap.latest.point if snap.latest else None
    since = attempt_start(snap)
    seen: dict[tuple, float] = {}
    for point in (*snap.history, *snap.recent):
        if point is latest or "loss" not in point.values:
            continue
        if since is not None and point.timestamp is not None and point.timestamp < since:
            continue  # an earlier attempt's losses are another training's level
        seen[(point.timestamp, point.epoch, point.iteration)] = point.values["loss"]
    if latest is not None:
        seen.pop((latest.timestamp, latest.epoch, latest.iteration), None)
    earlier = list(seen.values())
    lowest = min(earlier) if earlier else None
    level = median(earlier) if len(earlier) >= policy.loss_explosion_min_points and lowest is not None and lowest >= 0 \
        else None
    return LossHistory(len(earlier), level if level else None, lowest)


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
