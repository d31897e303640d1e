"""Requests-per-minute and tokens-per-minute limits of a network endpoint (OpenAI-compatible
chat completions, Cloud Translation), shared by the threads of one job that call it.

Two token buckets, one for requests and one for tokens (or characters: whatever unit the
endpoint's quota counts), each refilled continuously at its per-minute limit / 60 a second.
A bucket holds one second's worth (our choice, because OpenAI enforces a per-minute limit over
shorter periods too, e.g. 60,000 requests a minute as 1,000 a second, per its rate-limit guide;
a full minute's burst at the start would be refused). A request takes one request and its
token cost from both at once, waiting until both can give it; a cost larger than the bucket
waits for a full bucket and leaves it in debt, so the average rate stays at the limit. A single
request costing more than a whole minute's tokens can never be sent within the limit and fails
naming the limit. After the reply, `settle` corrects the token bucket by the difference between
the estimated cost and the tokens the endpoint reports.

The clock and the sleep are injected (tests drive them without waiting). The limit holds per
job: jobs running at once against one endpoint each keep their own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from polyculture.errors import ConfigError

_SLACK = 1e-9


@dataclass
class Bucket:
    """A token bucket of `per_minute` units a minute holding at most `capacity` units; `level`
    may go below zero (debt) after a cost above the capacity."""

    per_minute: float
    capacity: float
    level: float
    stamp: float

    @classmethod
    def full(cls, per_minute: float, now: float) -> Bucket:
        """A full bucket of one second's worth of `per_minute` (at least one unit)."""
        capacity = max(1.0, per_minute / 60.0)
        return cls(per_minute, capacity, capacity, now)

    def refill(self, now: float) -> None:
        """Add what accrued since the last refill, up to the capacity."""
        if now > self.stamp:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.per_minute / 60)
        self.stamp = max(self.stamp, now)

    def wait_s(self, cost: float) -> float:
        """Seconds until the bucket can give `cost` (a full bucket for a cost above it)."""
        need = min(cost, self.capacity)
        if self.level >= need - _SLACK:  # a float sum short of `need` by rounding counts as there
            return 0.0
        return (need - self.level) * 60 / self.per_minute


class RateLimiter:
    """Requests-per-minute and tokens-per-minute limits (None: unlimited) of one endpoint,
    thread-safe; `name` (the config key) and `endpoint` appear in its errors."""

    def __init__(
        self,
        requests_per_minute: float | None,
        tokens_per_minute: float | None,
        *,
        name: str = "rate limit",
        endpoint: str = "",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        for key, value in (
            ("requests_per_minute", requests_per_minute),
            ("tokens_per_minute", tokens_per_minute),
        ):
            if value is not None and not value > 0:
                raise ConfigError(f"{name}.{key}", f"expected a number > 0, got {value!r}")
        self.name = name
        self.endpoint = endpoint
        self.tokens_per_minute = tokens_per_minute
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        now = clock()
        self._requests = Bucket.full(requests_per_minute, now) if requests_per_minute else None
        self._tokens = Bucket.full(tokens_per_minute, now) if tokens_per_minute else None
        #: seconds spent waiting for the limits, summed over the calls (a job's log reports it)
        self.waited_s = 0.0

    @property
    def limited(self) -> bool:
        """Whether any limit is set."""
        return self._requests is not None or self._tokens is not None

    def try_acquire(self, tokens: int = 0) -> float:
        """Take one request and `tokens` tokens now and return 0, or return the seconds to wait
        before trying again (nothing taken)."""
        if self._tokens is not None and tokens > self.tokens_per_minute:  # type: ignore[operator]
            raise ConfigError(
                f"{self.name}.tokens_per_minute",
                f"a request to {self.endpoint or 'the endpoint'} costs {tokens} tokens, more "
                f"than the limit of {self.tokens_per_minute:g} a minute: raise the limit or "
                "shorten the request",
            )
        with self._lock:
            now = self._clock()
            wait = 0.0
            for bucket, cost in ((self._requests, 1), (self._tokens, tokens)):
                if bucket is not None:
                    bucket.refill(now)
                    wait = max(wait, bucket.wait_s(cost))
            if wait > 0:
                return wait
            if self._requests is not None:
                self._requests.level -= 1
            if self._tokens is not None:
                self._tokens.level -= tokens
            return 0.0

    def acquire(self, tokens: int = 0) -> None:
        """Wait until one request of `tokens` tokens fits both limits, and take it."""
        while True:
            wait = self.try_acquire(tokens)
            if wait <= 0:
                return
            with self._lock:
                self.waited_s += wait
            self._sleep(wait)

    def settle(self, reserved: int, used: int) -> None:
        """Correct the token bucket after a reply: it took `reserved` tokens, the endpoint
        counted `used` (the difference goes back, or is taken as well)."""
        if self._tokens is None or used == reserved:
            return
        with self._lock:
            self._tokens.refill(self._clock())
            self._tokens.level = min(self._tokens.capacity, self._tokens.level + reserved - used)
