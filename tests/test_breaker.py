"""The circuit breaker's states, on a clock the test moves."""

from __future__ import annotations

from orchestrator.providers.breaker import CircuitBreaker, Policy, State


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock | None = None, **policy: float) -> CircuitBreaker:
    settings = {"failure_rate": 0.5, "min_calls": 4, "window": 10, "cooldown_s": 30, **policy}
    return CircuitBreaker(Policy(**settings), clock or Clock())  # type: ignore[arg-type]


def test_opens_on_the_failure_rate_once_min_calls_are_seen_and_fails_fast() -> None:
    clock = Clock()
    cb = breaker(clock)
    assert [cb.failed() for _ in range(3)] == [False, False, False], "below min_calls"
    assert cb.failed() is True
    assert cb.state is State.OPEN
    assert (cb.trip.failures, cb.trip.calls, cb.trip.rate) == (4, 4, 1.0)
    assert not cb.allow()
    clock.now += 10
    assert not cb.allow()
    assert cb.remaining_s() == 20


def test_a_failure_rate_below_the_threshold_never_opens() -> None:
    cb = breaker(failure_rate=0.6)
    for _ in range(50):  # one failure in three: at most 50 % of any window of 4 or more
        assert cb.failed() is False
        cb.succeeded()
        cb.succeeded()
    assert cb.state is State.CLOSED


def test_the_rate_is_over_the_last_window_attempts() -> None:
    cb = breaker(failure_rate=0.6, min_calls=5, window=5)
    for _ in range(20):
        cb.succeeded()
    assert [cb.failed() for _ in range(3)] == [False, False, True], "3 of the last 5 failed"
    assert (cb.trip.failures, cb.trip.calls, cb.trip.rate) == (3, 5, 0.6)


def test_successes_in_between_do_not_hide_an_outage() -> None:
    # counting consecutive failures, one success in four would keep a breaker closed for ever
    cb = breaker(failure_rate=0.7, min_calls=8, window=8)
    for _ in range(2):
        assert [cb.failed(), cb.failed(), cb.failed(), cb.succeeded()] == [False] * 4
    assert cb.failed() is True, "6 of the last 8 attempts failed: 75 %"
    assert (cb.trip.failures, cb.trip.calls) == (6, 8)


def test_outcomes_of_attempts_under_way_when_it_opened_are_ignored() -> None:
    cb = breaker(min_calls=1)
    assert cb.failed() is True
    assert cb.failed() is False, "an attempt sent before the breaker opened reopens nothing"
    assert cb.succeeded() is False, "nor closes it: only the probe does"
    assert cb.state is State.OPEN


def test_after_the_cooldown_exactly_one_probe_goes_through() -> None:
    clock = Clock()
    cb = breaker(clock, min_calls=1, cooldown_s=5)
    cb.failed()
    clock.now += 5
    assert cb.allow()
    assert cb.state is State.HALF_OPEN
    assert not cb.allow(), "a second call while the probe is out must fail fast"


def test_a_successful_probe_closes_with_a_fresh_window_and_a_failed_one_reopens() -> None:
    clock = Clock()
    cb = breaker(clock, min_calls=2, cooldown_s=5)
    cb.failed()
    cb.failed()
    clock.now += 5
    cb.allow()
    assert cb.failed() is True, "a failed probe opens the breaker again"
    assert (cb.trip.failures, cb.trip.calls) == (1, 1)
    assert cb.remaining_s() == 5
    clock.now += 5
    cb.allow()
    assert cb.succeeded() is True
    assert cb.state is State.CLOSED
    assert cb.allow()
    assert cb.failed() is False, "the failures before the outage ended are forgotten"
