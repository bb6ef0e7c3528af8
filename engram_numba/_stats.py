"""Overhead estimates from interleaved A/B rounds: a median with a bootstrap interval.

Machines are shared and noisy, so an overhead is measured as many short rounds
that run the instrumented and the uninstrumented variant back to back, in
alternating order; each round gives one ratio, and the estimate is the median
ratio with a percentile bootstrap confidence interval (resampling the rounds).
A few slow rounds (another process woke up) move the median little, and the
interval says how far the estimate can be trusted.
"""

from __future__ import annotations

import numpy as np

__all__ = ["overhead_estimate"]


def overhead_estimate(instrumented, baseline, *, confidence: float = 0.95,
                      resamples: int = 4000, seed: int = 0) -> dict:
    """``{"median_percent", "ci_percent": [lo, hi], "rounds", "confidence"}``.

    ``instrumented[k]`` and ``baseline[k]`` are the times of round ``k``.
    """
    a = np.asarray(instrumented, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ValueError("need two equally long series of at least 2 rounds")
    if not (np.all(b > 0) and np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("round times must be finite and the baseline's positive")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    pct = (a / b - 1.0) * 100.0
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, pct.size, size=(resamples, pct.size))
    medians = np.median(pct[picks], axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    lo, hi = np.percentile(medians, [tail, 100.0 - tail])
    return {"median_percent": float(np.median(pct)), "ci_percent": [float(lo), float(hi)],
            "rounds": int(pct.size), "confidence": confidence}
