"""A circuit breaker: after `threshold` consecutive failures, calls fail fast for `cooldown_s`.

    closed ──threshold failures──▶ open ──cooldown passed──▶ half-open (one probe in flight)
      ▲                                                        │ probe fails: open again
      └─────────────────────── probe succeeds ─────────────────┘

A failure is an attempt that a retry could fix (timeouts, 5xx, dropped connections...); any
other answer shows the server is there and counts as a success.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum


class State(Enum):
    """Where a breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """One breaker, for one (kind, base_url, model)."""

    def __init__(
        self, threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.state = State.CLOSED
        self.failures = 0
        self.opened_at = 0.0

    def allow(self) -> bool:
        """Whether an attempt may go out now; after the cooldown, only one probe does."""
        if self.state is State.CLOSED:
            return True
        if self.state is State.OPEN and self.clock() - self.opened_at >= self.cooldown_s:
            self.state = State.HALF_OPEN
            return True
        return False

    def remaining_s(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when it is not open)."""
        if self.state is not State.OPEN:
            return 0.0
        return max(0.0, self.cooldown_s - (self.clock() - self.opened_at))

    def succeeded(self) -> bool:
        """Record a success; True if that closed an open breaker."""
        reopened = self.state is not State.CLOSED
        self.state = State.CLOSED
        self.failures = 0
        return reopened

    def failed(self) -> bool:
        """Record a failure; True if that opened the breaker."""
        self.failures += 1
        if self.state is State.HALF_OPEN or (
            self.state is State.CLOSED and self.failures >= self.threshold
        ):
            self.state = State.OPEN
            self.opened_at = self.clock()
            return True
        return False
