"""The pool index: every known frame, its latest scores and embedding, and TopK over it.

Row-aligned numpy columns grown by doubling, so a query at 1,000,000 frames is
a few vectorised passes (see ``lumenal.ml.strategies``). Scores live in
``ScoreSet``s, one per model version:

- ``live`` is what TopK answers from (version 0 = no model yet: it holds only a
  cheap thumbnail descriptor per frame, for diverse cold-start selection);
- ``next`` collects the scores of a newly published version during a re-score.
  When every unlabeled frame scored in ``live`` is scored in ``next`` the two
  swap, so TopK never mixes versions and keeps answering from the old scores
  while the re-score runs.

The index is a pure fold over events (frames.ingested, frames.scored, labels.*,
models.published) so it can be rebuilt by replaying them; ``save``/``load``
write a snapshot with the topic offsets it covers so a restart replays only
the tail.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lumenal.ml import strategies
from lumenal.v1 import common_pb2

METRICS = ("entropy", "least_confidence", "margin", "bald", "variation_ratio")
MAX_SEEDS = 2000  # labeled embeddings handed to diversity strategies as k-center seeds
_SCALARS = ("least_confidence", "margin", "entropy", "bald", "variation_ratio")


class ScoreSet:
    """Scores of one model version for every row (``ok`` marks rows that have them)."""

    def __init__(self, version: int, cap: int) -> None:
        self.version = version
        self.cap = cap
        self.ok = np.zeros(cap, dtype=bool)
        self.classes = 0
        self.dim = 0
        self.probabilities = np.zeros((cap, 0), dtype=np.float16)
        self.embeddings = np.zeros((cap, 0), dtype=np.float16)
        self.predicted = np.zeros(cap, dtype=np.int16)
        self.cols = {name: np.full(cap, np.nan, dtype=np.float32) for name in _SCALARS}
        self.has_bald = False

    def grow(self, cap: int) -> None:
        def pad(a: np.ndarray, fill: float = 0) -> np.ndarray:
            out = np.full((cap, *a.shape[1:]), fill, dtype=a.dtype)
            out[: a.shape[0]] = a
            return out
        self.ok, self.predicted = pad(self.ok), pad(self.predicted)
        self.probabilities, self.embeddings = pad(self.probabilities), pad(self.embeddings)
        self.cols = {k: pad(v, np.nan) for k, v in self.cols.items()}
        self.cap = cap

    def _shape(self, classes: int, dim: int) -> None:
        """Fix the class count / embedding width on the first score (a version has one shape)."""
        if self.classes == 0 and classes:
            self.classes = classes
            self.probabilities = np.zeros((self.cap, classes), dtype=np.float16)
        if self.dim == 0 and dim:
            self.dim = dim
            self.embeddings = np.zeros((self.cap, dim), dtype=np.float16)

    def put(self, row: int, s: common_pb2.FrameScore) -> bool:
        """Store one score; False when its shape disagrees with this version's."""
        self._shape(len(s.probabilities), len(s.embedding))
        if len(s.probabilities) not in (0, self.classes) or len(s.embedding) not in (0, self.dim):
            return False
        if self.classes and len(s.probabilities):
            self.probabilities[row] = s.probabilities
        if self.dim and len(s.embedding):
            self.embeddings[row] = s.embedding
        self.predicted[row] = s.predicted_class
        for name in _SCALARS:
            self.cols[name][row] = getattr(s, name)
        self.has_bald = self.has_bald or s.bald > 0
        self.ok[row] = True
        return True

    def score_of(self, row: int, frame_id: str, model_name: str) -> common_pb2.FrameScore:
        return common_pb2.FrameScore(
            frame_id=frame_id, model_name=model_name if self.version else "", model_version=self.version,
            probabilities=self.probabilities[row].astype(np.float32).tolist() if self.classes else [],
            predicted_class=int(self.predicted[row]),
            **{name: float(np.nan_to_num(self.cols[name][row])) for name in _SCALARS})


@dataclass
class Selection:
    rows: np.ndarray
    strategy: str
    version: int
    pool_size: int


@dataclass
class RescoreProgress:
    running: bool
    version: int
    done: int
    total: int


class PoolIndex:
    """Thread-safe pool of frames (see module docstring)."""

    def __init__(self, model_name: str, cap: int = 1024) -> None:
        self.model_name = model_name
        self.lock = threading.RLock()
        self.ids: list[str] = []
        self.rows: dict[str, int] = {}
        self.cap = cap
        self.labeled = np.zeros(cap, dtype=bool)
        self.removed = np.zeros(cap, dtype=bool)
        self.partition = np.full(cap, -1, dtype=np.int16)
        self.live = ScoreSet(0, cap)
        self.next: ScoreSet | None = None
        self.target_version = 0        # last version named by models.published (0 = none yet)
        self.pending_labels: set[str] = set()   # labels that arrived before their frame
        self.offsets: dict[str, int] = {}       # "topic:partition" -> next offset covered
        self.rejected = 0                       # scores whose shape disagreed with their version

    # ------------------------------------------------------------ writes
    def __len__(self) -> int:
        return len(self.ids)

    def _grow(self, need: int) -> None:
        if need <= self.cap:
            return
        cap = max(need, self.cap * 2)
        for name in ("labeled", "removed", "partition"):
            a = getattr(self, name)
            out = np.full(cap, -1 if name == "partition" else 0, dtype=a.dtype)
            out[: a.shape[0]] = a
            setattr(self, name, out)
        for s in (self.live, self.next):
            if s is not None:
                s.grow(cap)
        self.cap = cap

    def _row(self, frame_id: str) -> int:
        row = self.rows.get(frame_id)
        if row is None:
            row = len(self.ids)
            self._grow(row + 1)
            self.ids.append(frame_id)
            self.rows[frame_id] = row
            if frame_id in self.pending_labels:
                self.pending_labels.discard(frame_id)
                self.labeled[row] = True
        return row

    def add_frames(self, frame_ids: list[str], partition: int = -1) -> None:
        with self.lock:
            for fid in frame_ids:
                row = self._row(fid)
                self.removed[row] = False
                if partition >= 0:
                    self.partition[row] = partition

    def remove_frames(self, frame_ids: list[str]) -> None:
        """Frames storage rolled back: never select them again."""
        with self.lock:
            for fid in frame_ids:
                if fid in self.rows:
                    self.removed[self.rows[fid]] = True

    def frames_of_video(self, video_id: str) -> list[str]:
        with self.lock:
            return [f for f in self.ids if f.rsplit(":", 1)[0] == video_id]

    def mark_labeled(self, frame_id: str) -> None:
        with self.lock:
            if frame_id in self.rows:
                self.labeled[self.rows[frame_id]] = True
            else:
                self.pending_labels.add(frame_id)

    def set_target(self, version: int) -> None:
        """A model version was published: collect its scores in ``next`` until complete."""
        with self.lock:
            self.target_version = version
            if version == self.live.version:
                self.next = None
            elif self.next is None or self.next.version != version:
                self.next = ScoreSet(version, self.cap)
            self._maybe_swap()

    def abandon_target(self, version: int) -> None:
        """The model server never loaded ``version``: stop waiting for its scores."""
        with self.lock:
            if self.next is not None and self.next.version == version:
                self.next = None

    def force_rescore(self, version: int) -> None:
        """Re-score even when ``version`` is already live (Rescore RPC)."""
        with self.lock:
            self.target_version = max(self.target_version, version)
            self.next = ScoreSet(version, self.cap)

    def apply_scores(self, version: int, scores: list[common_pb2.FrameScore], partition: int = -1) -> int:
        """Fold one frames.scored event in; returns how many scores were stored."""
        with self.lock:
            if version > 0 and self.target_version == 0 and version != self.live.version \
                    and (self.next is None or version > self.next.version):
                self.set_target(version)  # a replica adopted the server's version before any event
            sets = [s for s in (self.live, self.next) if s is not None and s.version == version]
            if not sets:
                return 0  # stale or superseded version
            stored = 0
            for sc in scores:
                row = self._row(sc.frame_id)
                if partition >= 0 and self.partition[row] < 0:
                    self.partition[row] = partition
                for s in sets:
                    ok = s.put(row, sc)
                    stored += ok
                    self.rejected += not ok
            self._maybe_swap()
            return stored

    def _maybe_swap(self) -> None:
        nxt = self.next
        if nxt is None:
            return
        n = len(self.ids)
        need = self.live.ok[:n] & ~self.labeled[:n] & ~self.removed[:n]
        if self.live.version == 0 and not nxt.ok[:n].any():
            return  # leaving cold start needs at least one real score
        if not (need & ~nxt.ok[:n]).any():
            self.live, self.next = nxt, None

    # ------------------------------------------------------------- reads
    def progress(self) -> RescoreProgress:
        with self.lock:
            n = len(self.ids)
            if self.next is None:
                return RescoreProgress(False, self.live.version, 0, 0)
            want = (self.live.ok[:n] | self.next.ok[:n]) & ~self.labeled[:n] & ~self.removed[:n]
            return RescoreProgress(True, self.next.version, int((want & self.next.ok[:n]).sum()),
                                   int(want.sum()))

    def rows_needing(self, version: int, partitions: set[int] | None, limit: int,
                     skip: set[str]) -> list[str]:
        """Unlabeled frames not yet scored under ``version`` (owned by ``partitions``; None = all)."""
        with self.lock:
            n = len(self.ids)
            target = self.next if self.next is not None and self.next.version == version else \
                self.live if self.live.version == version else None
            scored = target.ok[:n] if target is not None else np.zeros(n, dtype=bool)
            need = ~scored & ~self.labeled[:n] & ~self.removed[:n]
            if partitions is not None:
                need &= np.isin(np.maximum(self.partition[:n], 0), list(partitions))
            out: list[str] = []
            for row in np.flatnonzero(need):
                fid = self.ids[row]
                if fid not in skip:
                    out.append(fid)
                    if len(out) >= limit:
                        break
            return out

    def score(self, frame_id: str) -> common_pb2.FrameScore | None:
        """Newest score of one frame (``next`` first during a re-score)."""
        with self.lock:
            row = self.rows.get(frame_id)
            if row is None:
                return None
            for s in (self.next, self.live):
                if s is not None and s.ok[row]:
                    return s.score_of(row, frame_id, self.model_name)
            return common_pb2.FrameScore(frame_id=frame_id)

    def counts(self) -> dict[str, int]:
        with self.lock:
            n = len(self.ids)
            return {"frames": int(n - self.removed[:n].sum()), "scored": int(self.live.ok[:n].sum())
                    if self.live.version else 0, "labeled": int(self.labeled[:n].sum()),
                    "model_version": self.live.version}

    def histogram(self, metric: str, bins: int) -> tuple[np.ndarray, np.ndarray]:
        """Histogram of ``metric`` over unlabeled scored frames (live version)."""
        with self.lock:
            n = len(self.ids)
            live = self.live
            mask = live.ok[:n] & ~self.labeled[:n] & ~self.removed[:n]
            values = live.cols[metric][:n][mask] if live.version else np.empty(0, np.float32)
        values = values[np.isfinite(values)]
        if values.size == 0:
            return np.linspace(0, 1, bins + 1), np.zeros(bins, dtype=np.int64)
        counts, edges = np.histogram(values, bins=bins)
        return edges, counts

    def select(self, k: int, strategy_name: str, cold_strategy: str, exclude: list[str],
               seed: int) -> Selection:
        """TopK: run ``strategy_name`` over selectable rows (cold start may fall back)."""
        strat = strategies.get(strategy_name)  # raises UnknownStrategy first
        with self.lock:
            n = len(self.ids)
            live = self.live
            available = live.ok[:n] & ~self.labeled[:n] & ~self.removed[:n]
            for fid in exclude:
                row = self.rows.get(fid)
                if row is not None:
                    available[row] = False
            labeled_rows = np.flatnonzero(self.labeled[:n] & live.ok[:n])
            if labeled_rows.size > MAX_SEEDS:  # k-center seeds: a sample keeps the gather O(MAX_SEEDS)
                labeled_rows = np.sort(np.random.default_rng(seed).choice(labeled_rows, MAX_SEEDS, replace=False))
            cols = {name: live.cols[name][:n] for name in _SCALARS}
            probs, emb = live.probabilities[:n], live.embeddings[:n]
            has_bald = live.has_bald
        used = strategy_name
        needs = strategies.NEEDS.get(strategy_name, ())
        if live.version == 0 and any(x in needs for x in ("probabilities", "bald")):
            used = cold_strategy
            strat = strategies.get(cold_strategy)
        elif "bald" in needs and not has_bald:
            raise strategies.MissingInput(
                f"strategy {strategy_name!r} needs MC-dropout BALD scores but model version "
                f"{live.version} was scored without them (set LUMENAL_INFERENCE_MC=true)")
        if "embeddings" in strategies.NEEDS.get(used, ()) and live.dim == 0:
            used, strat = "random", strategies.get("random")
        pool = strategies.Pool(
            probabilities=probs if live.classes else None, entropy=cols["entropy"],
            bald=cols["bald"] if has_bald else None, embeddings=emb if live.dim else None,
            labeled_embeddings=emb[labeled_rows] if live.dim and labeled_rows.size else None,
            least_confidence=cols["least_confidence"], margin=cols["margin"], available=available)
        rows = strat.select(pool, k, np.random.default_rng(seed))
        return Selection(rows, used, live.version, int(available.sum()))

    def scores_of_rows(self, rows: np.ndarray, version: int) -> list[common_pb2.FrameScore]:
        with self.lock:
            live = self.live if self.live.version == version else (self.next or self.live)
            return [live.score_of(int(r), self.ids[int(r)], self.model_name) for r in rows]

    # ---------------------------------------------------------- snapshot
    def save(self, path: str | Path) -> None:
        """Atomic snapshot (temp file + rename) of the whole index and the offsets it covers."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock:
            n = len(self.ids)
            arrays: dict[str, np.ndarray] = {
                "ids": np.array(self.ids, dtype=object).astype(str) if n else np.array([], dtype="<U1"),
                "labeled": self.labeled[:n], "removed": self.removed[:n], "partition": self.partition[:n]}
            meta = {"target_version": self.target_version, "offsets": self.offsets,
                    "pending_labels": sorted(self.pending_labels), "sets": {}}
            for tag, s in (("live", self.live), ("next", self.next)):
                if s is None:
                    continue
                meta["sets"][tag] = {"version": s.version, "has_bald": s.has_bald}
                arrays[f"{tag}_ok"] = s.ok[:n]
                arrays[f"{tag}_probabilities"] = s.probabilities[:n]
                arrays[f"{tag}_embeddings"] = s.embeddings[:n]
                arrays[f"{tag}_predicted"] = s.predicted[:n]
                for name, col in s.cols.items():
                    arrays[f"{tag}_{name}"] = col[:n]
            arrays["meta"] = np.array(json.dumps(meta))
            tmp = path.with_name(path.name + ".tmp.npz")
            np.savez(tmp, **arrays)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path, model_name: str) -> PoolIndex:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            ids = [str(x) for x in z["ids"]]
            pool = cls(model_name, cap=max(1024, len(ids)))
            n = len(ids)
            pool.ids = ids
            pool.rows = {f: i for i, f in enumerate(ids)}
            pool.labeled[:n], pool.removed[:n], pool.partition[:n] = z["labeled"], z["removed"], z["partition"]
            pool.target_version = int(meta["target_version"])
            pool.offsets = {k: int(v) for k, v in meta["offsets"].items()}
            pool.pending_labels = set(meta["pending_labels"])
            for tag, info in meta["sets"].items():
                s = ScoreSet(int(info["version"]), pool.cap)
                s.has_bald = bool(info["has_bald"])
                probs, emb = z[f"{tag}_probabilities"], z[f"{tag}_embeddings"]
                s._shape(probs.shape[1], emb.shape[1])
                s.ok[:n], s.predicted[:n] = z[f"{tag}_ok"], z[f"{tag}_predicted"]
                s.probabilities[:n], s.embeddings[:n] = probs, emb
                for name in _SCALARS:
                    s.cols[name][:n] = z[f"{tag}_{name}"]
                setattr(pool, tag, s)
        return pool
