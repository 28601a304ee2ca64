"""Per-key request rate limits: a token bucket per API key (429 with Retry-After)."""

from __future__ import annotations

import time


class RateLimiter:
    """`rate_per_minute` sustained, `burst` at once, per key; in memory (one gateway process)."""

    def __init__(self, rate_per_minute: float, burst: int):
        self.rate = float(rate_per_minute) / 60.0
        self.burst = max(1, int(burst))
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, now: float | None = None) -> float:
        """0.0 when the request may go; else the seconds to wait before the next one."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate
