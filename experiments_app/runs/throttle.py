"""Backing off for a whole application (SPEC §4's retries are per test; this is per application).

When an application answers 429 or 503 it is overloaded, whichever test the answer was for.
The dispatcher then sends fewer requests at once: its in-flight limit halves on a throttling
answer (at most once per `decrease_interval`, so one burst of answers to requests sent together
counts once) and grows back by about one request per round of successes (AIMD, as TCP's
congestion avoidance). A Retry-After on a throttling answer pauses every new request to the
application until then, not only the retry of that test.

Pure logic over numbers and a clock: tested without a database.
"""

import time

THROTTLING_STATUSES = frozenset({429, 503})


def is_throttling(status_code):
    return status_code in THROTTLING_STATUSES


class InFlightLimit:
    """The number of requests the dispatcher may have in flight to one application."""

    def __init__(self, cap, *, decrease_interval=1.0, clock=time.monotonic):
        self.cap = max(1, int(cap))
        self.value = self.cap
        self.successes = 0  # since the last increase
        self.decrease_interval = decrease_interval
        self.clock = clock
        self.decreased_at = None
        self.paused_until = 0.0

    @property
    def current(self):
        return self.value

    def on_success(self):
        """Additive increase: +1 after a round of `current` successes."""
        self.successes += 1
        if self.successes >= self.value:
            self.value = min(self.cap, self.value + 1)
            self.successes = 0

    def on_throttled(self, retry_after=None):
        """Multiplicative decrease (halve), and an application-wide pause for `retry_after` seconds."""
        now = self.clock()
        if self.decreased_at is None or now - self.decreased_at >= self.decrease_interval:
            self.value = max(1, self.value // 2)
            self.successes = 0
            self.decreased_at = now
        if retry_after:
            self.paused_until = max(self.paused_until, now + retry_after)

    def free_slots(self, in_flight):
        """How many more requests may start now."""
        if self.clock() < self.paused_until:
            return 0
        return max(0, self.current - in_flight)

    def pause_left(self):
        return max(0.0, self.paused_until - self.clock())
