"""Retrain policy: every N labels, minimum interval, manual trigger, coalescing."""

from __future__ import annotations

from lumenal.training.policy import RetrainPolicy


def _labels(p: RetrainPolicy, start: int, n: int, at: float = 0.0) -> list[bool]:
    return [p.on_label(str(i), f"v:{i:06d}", at) for i in range(start, start + n)]


def test_every_n_labels_requests_once_and_redeliveries_do_not_count():
    p = RetrainPolicy(every_n=3, min_interval_s=0)
    assert _labels(p, 0, 2) == [False, False]
    assert p.on_label("1", "v:000001", 0) is False  # redelivered event
    assert p.labels_since_last_run == 2
    assert p.on_label("2", "v:000002", 12.5) is True
    assert p.pending.reason == "labels" and p.pending.trigger_frame_id == "v:000002"
    assert p.pending.trigger_at == 12.5
    assert _labels(p, 3, 5) == [False] * 5  # already pending: no second request
    req = p.next_run(now=100)
    assert req is not None and p.running and p.labels_since_last_run == 0


def test_min_interval_delays_label_runs_but_not_manual_ones():
    p = RetrainPolicy(every_n=1, min_interval_s=60)
    p.request("first")
    assert p.next_run(0) is not None
    p.finish(now=10)
    p.on_label("a", "v:000001", 11)
    assert p.next_run(now=20) is None
    assert p.wait_s(now=20) == 50
    assert p.next_run(now=70) is not None
    p.finish(now=80)
    p.on_label("b", "v:000002", 81)
    p.request("admin")  # manual makes the pending request skip the interval
    assert p.wait_s(now=81) == 0
    assert p.next_run(now=81).manual


def test_requests_during_a_run_coalesce_into_one_follow_up():
    p = RetrainPolicy(every_n=2, min_interval_s=0)
    assert p.request("ui") is False
    assert p.request("ui again") is True  # coalesced into the queued one
    first = p.next_run(0)
    assert first.reason == "ui" and first.count == 2
    assert p.request("during 1") is True
    assert p.request("during 2") is True
    assert _labels(p, 0, 4) == [False] * 4  # labels during the run join the same follow-up
    assert p.next_run(1) is None  # one run at a time
    p.finish(2)
    follow = p.next_run(3)
    assert follow.reason == "during 1" and follow.count == 2
    p.finish(4)
    assert p.next_run(5) is None  # nothing else was asked


def test_labels_arriving_during_a_run_queue_a_follow_up():
    p = RetrainPolicy(every_n=2, min_interval_s=0)
    p.request("start")
    p.next_run(0)
    assert _labels(p, 10, 2) == [False, True]
    assert p.next_run(1) is None
    p.finish(2)
    assert p.next_run(2).reason == "labels"
