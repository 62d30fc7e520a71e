"""The circuit breaker's states, on a clock the test moves."""

from __future__ import annotations

from orchestrator.providers.breaker import CircuitBreaker, State


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_consecutive_failures_and_fails_fast() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=3, cooldown_s=30, clock=clock)
    assert [breaker.failed() for _ in range(3)] == [False, False, True]
    assert breaker.state is State.OPEN
    assert not breaker.allow()
    clock.now += 10
    assert not breaker.allow()
    assert breaker.remaining_s() == 20


def test_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(threshold=2, cooldown_s=30, clock=Clock())
    breaker.failed()
    assert breaker.succeeded() is False
    assert breaker.failed() is False
    assert breaker.state is State.CLOSED


def test_after_the_cooldown_exactly_one_probe_goes_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown_s=5, clock=clock)
    breaker.failed()
    clock.now += 5
    assert breaker.allow()
    assert breaker.state is State.HALF_OPEN
    assert not breaker.allow(), "a second call while the probe is out must fail fast"


def test_a_successful_probe_closes_and_a_failed_one_reopens() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown_s=5, clock=clock)
    breaker.failed()
    clock.now += 5
    breaker.allow()
    assert breaker.failed() is True, "a failed probe opens the breaker again"
    assert breaker.remaining_s() == 5
    clock.now += 5
    breaker.allow()
    assert breaker.succeeded() is True
    assert breaker.state is State.CLOSED
    assert breaker.allow()
