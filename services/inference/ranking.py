"""Score orders that survive writes: TopK without a per-query pass over the pool.

A ``RankIndex`` belongs to one ``ScoreSet``. For each score name it keeps a
*base*: the rows that were selectable at write sequence ``s0``, sorted best
first (one stable argsort, in a background thread on large pools). Every write
after ``s0`` stamps its row and is appended to a log, so a query

- walks the base in growing chunks, skipping unavailable rows and rows written
  since ``s0`` (their base position is outdated), until it holds ``m`` rows;
- takes the best ``m`` of the rows written since ``s0`` (the delta) at their
  current values;
- merges the two by (score descending, row ascending).

That is exact: an available row is either unwritten since ``s0`` (in the base
at its right place) or in the delta. A row that becomes selectable again
without a new score (a rolled-back removal undone) must be ``touch``ed. The
owner rebuilds the base (LSM-style compaction) once the delta passes
``rebuild_after`` rows, so a query costs O(m + delta), never O(pool).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

ValuesAt = Callable[[np.ndarray], np.ndarray]


class RankIndex:
    """Per-score base orders plus the write log that keeps them exact (see module docstring)."""

    def __init__(self, cap: int) -> None:
        self.stamp = np.zeros(cap, dtype=np.int64)  # write sequence of each row's last write
        self.seq = 0                                # writes so far
        self.s0 = 0                                 # sequence the bases were sorted at
        self.bases: dict[str, np.ndarray] = {}      # score name -> rows best first (int32)
        self.wanted: set[str] = set()               # score names queries asked for
        self.building = False
        self.builds = 0                             # bases installed so far
        self._log = np.zeros(1024, dtype=np.int32)  # rows of writes _log_start+1 .. seq
        self._log_start = 0

    def grow(self, cap: int) -> None:
        stamp = np.zeros(cap, dtype=np.int64)
        stamp[: self.stamp.shape[0]] = self.stamp
        self.stamp = stamp

    def touch(self, row: int) -> None:
        """Record a write to ``row`` (a new score, or selectable again)."""
        self.seq += 1
        self.stamp[row] = self.seq
        if not self.bases and not self.building:  # nothing sorted yet: no delta to keep
            self._log_start = self.seq
            return
        i = self.seq - self._log_start - 1
        if i >= self._log.shape[0]:
            log = np.zeros(2 * self._log.shape[0], dtype=np.int32)
            log[: i] = self._log[: i]
            self._log = log
        self._log[i] = row

    def stale(self) -> int:
        """Writes since the bases were sorted (how far they lag)."""
        return self.seq - self.s0

    def delta(self) -> np.ndarray:
        """Rows written since ``s0``, each once (only a row's latest log entry matches its stamp)."""
        lo, hi = self.s0 - self._log_start, self.seq - self._log_start
        rows = self._log[lo:hi].astype(np.int64)
        return rows[self.stamp[rows] == np.arange(self.s0 + 1, self.seq + 1)]

    def install(self, bases: dict[str, np.ndarray], s0: int) -> None:
        """Swap in bases sorted at sequence ``s0`` and drop the log entries they cover."""
        keep = self._log[s0 - self._log_start: self.seq - self._log_start]
        self._log = np.zeros(max(1024, 2 * keep.shape[0]), dtype=np.int32)
        self._log[: keep.shape[0]] = keep
        self._log_start = s0
        self.bases, self.s0 = bases, s0
        self.builds += 1

    def top(self, name: str, m: int, available: np.ndarray, values_at: ValuesAt) -> np.ndarray | None:
        """The ``m`` best rows with ``available[row]``, best first; None without a base for ``name``."""
        base = self.bases.get(name)
        if base is None:
            return None
        n = available.shape[0]
        fresh = _best(self.delta(), m, n, available, values_at)
        parts, got, pos, step = [], 0, 0, max(2 * m, 256)
        while got < m and pos < base.shape[0]:
            rows = base[pos: pos + step].astype(np.int64)
            pos, step = pos + step, step * 2
            rows = rows[rows < n]
            rows = rows[available[rows] & (self.stamp[rows] <= self.s0)]
            parts.append(rows)
            got += rows.shape[0]
        cand = np.concatenate([fresh, *parts])
        if cand.shape[0] == 0:
            return cand
        values = values_at(cand)
        return cand[np.lexsort((cand, -values))[:m]]


def _best(rows: np.ndarray, m: int, n: int, available: np.ndarray, values_at: ValuesAt) -> np.ndarray:
    """The best ``m`` available ``rows`` (plus any tied with the m-th), unordered; NaN never."""
    rows = rows[rows < n]
    rows = rows[available[rows]]
    values = values_at(rows)
    ok = ~np.isnan(values)
    rows, values = rows[ok], values[ok]
    if rows.shape[0] <= m or m == 0:
        return rows[:m] if m == 0 else rows
    kth = np.partition(-values, m - 1)[m - 1]
    return rows[-values <= kth]


def sort_rows(values: np.ndarray, selectable: np.ndarray) -> np.ndarray:
    """Selectable, non-NaN rows ordered by ``values`` descending, ties by row (int32)."""
    rows = np.flatnonzero(selectable & ~np.isnan(values))
    return rows[np.argsort(-values[rows], kind="stable")].astype(np.int32)
