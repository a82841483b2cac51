"""bench system's re-score timer: window from the first poll that sees it running to the end."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lumenal.bench.system import RescoreWatch


def _stats(script: list[tuple[bool, int, int, int, int]]):
    """Replays (running, rescore version, done, total, pool model version) per poll, then holds."""
    polls = iter(script)
    last = [script[0]]

    def stats() -> SimpleNamespace:
        last[0] = next(polls, last[0])
        running, version, done, total, model = last[0]
        return SimpleNamespace(model_version=model,
                               rescore=SimpleNamespace(running=running, model_version=version, done=done, total=total))
    return stats


def test_counts_frames_scored_inside_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RescoreWatch, "POLL_S", 0.001)
    script = [(False, 0, 0, 0, 0), (True, 1, 64, 1000, 0), (True, 1, 500, 1000, 0), (False, 0, 0, 0, 1)]
    frames, seconds, curve = RescoreWatch(_stats(script), 1, 10).start().result()
    assert frames == 1000 - 64  # what was done when first seen is outside the window
    assert seconds > 0 and curve[0] == (0.0, 0) and curve[-1][1] == frames
    assert [d for _, d in curve] == [0, 436, 936]


def test_a_rescore_never_seen_running_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RescoreWatch, "POLL_S", 0.001)
    with pytest.raises(RuntimeError, match="before it was seen running"):
        RescoreWatch(_stats([(False, 0, 0, 0, 0), (False, 0, 0, 0, 1)]), 1, 10).start().result()


def test_another_versions_rescore_is_not_timed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RescoreWatch, "POLL_S", 0.001)
    with pytest.raises(TimeoutError):
        RescoreWatch(_stats([(True, 2, 0, 10, 0)]), 1, 0.2).start().result()
