"""A circuit breaker that trips on outages: when at least `failure_rate` of the last `window`
attempts failed, with `min_calls` of them seen, calls fail fast for `cooldown_s`.

    closed ──failure rate reached──▶ open ──cooldown passed──▶ half-open (one probe in flight)
      ▲                                                        │ probe fails: open again
      └─────────────────────── probe succeeds ─────────────────┘

A failure is an attempt that a retry could fix (timeouts, 5xx, dropped connections...); any
other answer shows the server is there and counts as a success. The rate looks at attempts,
wherever they come from, so concurrent calls neither hide an outage nor fake one. Outcomes of
attempts that were under way when the breaker opened are ignored; closing starts a new window.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


class State(Enum):
    """Where a breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass(frozen=True)
class Trip:
    """Why the breaker last opened: `failures` of the last `calls` attempts."""

    failures: int
    calls: int

    @property
    def rate(self) -> float:
        """The failure rate that opened the breaker."""
        return round(self.failures / self.calls, 3)


@dataclass(frozen=True)
class Policy:
    """When a breaker opens and for how long."""

    failure_rate: float = 0.8
    min_calls: int = 20
    window: int = 40
    cooldown_s: float = 30.0


class CircuitBreaker:
    """One breaker, for one (kind, base_url, model)."""

    def __init__(self, policy: Policy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.cooldown_s = policy.cooldown_s
        self.clock = clock
        self.state = State.CLOSED
        self.outcomes: deque[bool] = deque(maxlen=max(policy.window, policy.min_calls))
        """True for each failed attempt of the window, False for each success."""
        self.trip = Trip(0, 0)
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
        """Record a success; True if that closed the breaker (the probe got an answer)."""
        if self.state is State.OPEN:
            return False
        if self.state is State.HALF_OPEN:
            self.state = State.CLOSED
            self.outcomes.clear()
            return True
        self.outcomes.append(False)
        return False

    def failed(self) -> bool:
        """Record a failure; True if that opened the breaker."""
        if self.state is State.OPEN:
            return False
        if self.state is State.HALF_OPEN:
            return self._open(Trip(1, 1))
        self.outcomes.append(True)
        calls = len(self.outcomes)
        failures = sum(self.outcomes)
        if calls < self.policy.min_calls or failures / calls < self.policy.failure_rate - 1e-9:
            return False
        return self._open(Trip(failures, calls))

    def _open(self, trip: Trip) -> bool:
        self.state = State.OPEN
        self.trip = trip
        self.opened_at = self.clock()
        self.outcomes.clear()
        return True
