"""Retrain policy: when to start a run, and coalescing of requests.

Pure logic with an injected clock so it is unit-testable; the service wraps
it in a lock and a worker thread. Rules:

- every ``every_n`` new resolved labels request a run, but label-driven runs
  never start closer than ``min_interval_s`` after the previous run finished;
- a manual trigger starts as soon as no run is active (it skips the interval);
- one run at a time: requests arriving during a run coalesce into exactly one
  follow-up run, which starts after the current one finishes.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Request:
    """The pending (coalesced) request: the first reason wins, manual is sticky."""

    reason: str
    manual: bool
    trigger_frame_id: str = ""
    trigger_at: float = 0.0   # unix time of the label that triggered it (0 = manual)
    count: int = 1
    run_id: str = ""          # the QUEUED run record this request will become


@dataclass
class RetrainPolicy:
    every_n: int
    min_interval_s: float
    running: bool = False
    pending: Request | None = None
    last_finished_at: float | None = None
    labels_since_last_run: int = 0
    _counted: set[str] = field(default_factory=set)

    def on_label(self, key: str, frame_id: str, resolved_at: float) -> bool:
        """Count one new resolved label (``key`` dedupes redeliveries); True if it requested a run."""
        if key in self._counted:
            return False
        self._counted.add(key)
        self.labels_since_last_run += 1
        if self.labels_since_last_run >= self.every_n and self.pending is None:
            self.pending = Request("labels", False, frame_id, resolved_at)
            return True
        return False

    def request(self, reason: str, manual: bool = True) -> bool:
        """Ask for a run; returns True when it coalesced into a pending or running one."""
        coalesced = self.running or self.pending is not None
        if self.pending is None:
            self.pending = Request(reason, manual)
        else:
            self.pending.manual = self.pending.manual or manual
            self.pending.count += 1
        return coalesced

    def next_run(self, now: float) -> Request | None:
        """The request to run now, if any; marks the policy running."""
        if self.running or self.pending is None:
            return None
        if (self.wait_s(now) or 0.0) > 0:
            return None
        req, self.pending = self.pending, None
        self.running = True
        # Labels counted from here on belong to the next run.
        self.labels_since_last_run = 0
        self._counted.clear()
        return req

    def wait_s(self, now: float) -> float | None:
        """Seconds until the pending request may start (None = nothing pending)."""
        if self.pending is None or self.running:
            return None
        if self.pending.manual or self.last_finished_at is None:
            return 0.0
        return max(0.0, self.min_interval_s - (now - self.last_finished_at))

    def finish(self, now: float) -> None:
        self.running = False
        self.last_finished_at = now
