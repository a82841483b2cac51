"""The pool index: every known frame, its latest scores and embedding, and TopK over it.

Row-aligned numpy columns grown by doubling. Each score set keeps its rows
sorted per score (``ranking.RankIndex``, exact under writes), so TopK at
1,000,000 frames reads O(k) rows instead of passing over the pool (see
``lumenal.ml.strategies``, ``Pool.ranked``). Scores live in ``ScoreSet``s,
one per model version:

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
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lumenal.ml import strategies
from lumenal.v1 import common_pb2

from . import ranking

METRICS = ("entropy", "least_confidence", "margin", "bald", "variation_ratio")
MAX_SEEDS = 1000  # labeled embeddings handed to diversity strategies as k-center seeds (their cap)
SYNC_RANK_BELOW = 100_000  # pools smaller than this sort rankings inline (a few ms)
REBUILD_MIN = 4096         # re-sort a ranking once this many (or 1/64 of the pool) rows changed
log = logging.getLogger(__name__)
_SCALARS = ("least_confidence", "margin", "entropy", "bald", "variation_ratio")


class Int8Rows:
    """int8 row vectors with one float32 scale per row, read as float32: ``rows[idx]``.

    Embeddings are the index's largest column; int8 halves float16 again. Selection
    compares distances among a few hundred rows, and a step of 1/127 of each
    row's largest component does not change which rows are far apart.
    """

    def __init__(self, q: np.ndarray, scale: np.ndarray) -> None:
        self.q, self.scale = q, scale

    @property
    def shape(self) -> tuple[int, ...]:
        return self.q.shape

    def __len__(self) -> int:
        return self.q.shape[0]

    def __getitem__(self, rows: np.ndarray | slice) -> np.ndarray:
        return self.q[rows].astype(np.float32) * self.scale[rows][..., None]


def quantize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``x`` as int8 (symmetric, per-row scale) and their float32 scales."""
    x = np.asarray(x, dtype=np.float32)
    scale = np.abs(x).max(axis=-1) / 127.0
    q = np.rint(x / np.maximum(scale, np.finfo(np.float32).tiny)[..., None]).astype(np.int8)
    return q, scale.astype(np.float32)


class ScoreSet:
    """Scores of one model version for every row (``ok`` marks rows that have them)."""

    def __init__(self, version: int, cap: int) -> None:
        self.version = version
        self.cap = cap
        self.ok = np.zeros(cap, dtype=bool)
        self.classes = 0
        self.dim = 0
        self.probabilities = np.zeros((cap, 0), dtype=np.float16)
        self.embeddings = np.zeros((cap, 0), dtype=np.int8)   # with emb_scale: see Int8Rows
        self.emb_scale = np.zeros(cap, dtype=np.float32)
        self.predicted = np.zeros(cap, dtype=np.int16)
        self.cols = {name: np.full(cap, np.nan, dtype=np.float32) for name in _SCALARS}
        self.has_bald = False
        self.rank = ranking.RankIndex(cap)

    def grow(self, cap: int) -> None:
        def pad(a: np.ndarray, fill: float = 0) -> np.ndarray:
            out = np.full((cap, *a.shape[1:]), fill, dtype=a.dtype)
            out[: a.shape[0]] = a
            return out
        self.ok, self.predicted, self.emb_scale = pad(self.ok), pad(self.predicted), pad(self.emb_scale)
        self.probabilities, self.embeddings = pad(self.probabilities), pad(self.embeddings)
        self.cols = {k: pad(v, np.nan) for k, v in self.cols.items()}
        self.rank.grow(cap)
        self.cap = cap

    def _shape(self, classes: int, dim: int) -> None:
        """Fix the class count / embedding width on the first score (a version has one shape)."""
        if self.classes == 0 and classes:
            self.classes = classes
            self.probabilities = np.zeros((self.cap, classes), dtype=np.float16)
        if self.dim == 0 and dim:
            self.dim = dim
            self.embeddings = np.zeros((self.cap, dim), dtype=np.int8)

    def put(self, row: int, s: common_pb2.FrameScore) -> bool:
        """Store one score; False when its shape disagrees with this version's."""
        self._shape(len(s.probabilities), len(s.embedding))
        if len(s.probabilities) not in (0, self.classes) or len(s.embedding) not in (0, self.dim):
            return False
        if self.classes and len(s.probabilities):
            self.probabilities[row] = s.probabilities
        if self.dim and len(s.embedding):
            self.store_embeddings(row, s.embedding)
        self.predicted[row] = s.predicted_class
        for name in _SCALARS:
            self.cols[name][row] = getattr(s, name)
        self.has_bald = self.has_bald or s.bald > 0
        self.ok[row] = True
        self.rank.touch(row)
        return True

    def store_embeddings(self, rows: int | slice | np.ndarray, x: np.ndarray) -> None:
        self.embeddings[rows], self.emb_scale[rows] = quantize(x)

    def embedding_rows(self, n: int) -> Int8Rows:
        """The first ``n`` embeddings, as strategies index them (float32 rows on access)."""
        return Int8Rows(self.embeddings[:n], self.emb_scale[:n])

    def values(self, name: str, rows: np.ndarray | None = None) -> np.ndarray:
        """Strategy score ``name`` (higher = pick first) as ``strategies.SCORES`` defines it."""
        cols = {c: (v if rows is None else v[rows]) for c, v in self.cols.items() if c in strategies.SCORES}
        return np.asarray(strategies.SCORES[name](strategies.Pool(**cols), name), dtype=np.float32)

    def scores_of(self, rows: np.ndarray, ids: list[str], model_name: str) -> list[common_pb2.FrameScore]:
        """FrameScores of ``rows`` (one gather per column, not one numpy scalar per field)."""
        rows = np.asarray(rows, dtype=np.int64)
        probs = self.probabilities[rows].astype(np.float32).tolist() if self.classes else [[]] * len(rows)
        pred = self.predicted[rows].tolist()
        cols = {name: np.nan_to_num(self.cols[name][rows]).tolist() for name in _SCALARS}
        name = model_name if self.version else ""
        return [common_pb2.FrameScore(
            frame_id=ids[r], model_name=name, model_version=self.version, probabilities=probs[j],
            predicted_class=pred[j], **{c: cols[c][j] for c in _SCALARS}) for j, r in enumerate(rows.tolist())]


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
        self.sync_below = SYNC_RANK_BELOW       # smaller pools sort their rankings inline
        self._labeled_rows = np.zeros(1024, dtype=np.int64)  # labeled rows in labeling order
        self._n_labeled = 0

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
                self._label(row)
        return row

    def _label(self, row: int) -> None:
        if self.labeled[row]:
            return
        self.labeled[row] = True
        if self._n_labeled == self._labeled_rows.shape[0]:
            grown = np.zeros(max(1024, 2 * self._n_labeled), dtype=np.int64)
            grown[: self._n_labeled] = self._labeled_rows
            self._labeled_rows = grown
        self._labeled_rows[self._n_labeled] = row
        self._n_labeled += 1

    def add_frames(self, frame_ids: list[str], partition: int = -1) -> None:
        with self.lock:
            for fid in frame_ids:
                row = self._row(fid)
                if self.removed[row]:  # selectable again: rankings must see it
                    self.removed[row] = False
                    for s in (self.live, self.next):
                        if s is not None:
                            s.rank.touch(row)
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
                self._label(self.rows[frame_id])
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
            self._refresh(self.live)
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
            nxt.rank.wanted |= self.live.rank.wanted
            self.live, self.next = nxt, None
            self._refresh(nxt)

    # ---------------------------------------------------------- rankings
    def _rebuild_after(self) -> int:
        return max(REBUILD_MIN, len(self.ids) // 64)

    def _refresh(self, s: ScoreSet, wait: bool = False) -> None:
        """Re-sort ``s``'s rankings when one is missing or its delta grew too long (lock held)."""
        rank = s.rank
        if rank.building or not rank.wanted:
            return
        if rank.wanted - rank.bases.keys() or rank.stale() > self._rebuild_after():
            self._build(s, background=not wait and len(self.ids) >= self.sync_below)

    def _build(self, s: ScoreSet, background: bool) -> None:
        """Snapshot ``s``'s wanted scores now (lock held) and sort them, maybe in a thread."""
        n, rank = len(self.ids), s.rank
        selectable = s.ok[:n] & ~self.labeled[:n] & ~self.removed[:n]
        values = {name: s.values(name)[:n].copy() for name in rank.wanted}
        s0 = rank.seq
        rank.building = True

        def work() -> None:
            try:
                bases = {name: ranking.sort_rows(v, selectable) for name, v in values.items()}
                with self.lock:
                    rank.install(bases, s0)
            except Exception:  # noqa: BLE001 - TopK falls back to a full pass meanwhile
                log.exception("pool ranking rebuild failed")
            finally:
                rank.building = False

        if background:
            threading.Thread(target=work, daemon=True, name="pool-rank").start()
        else:
            work()

    def warm(self, strategy_names: list[str] | tuple[str, ...], wait: bool = True) -> None:
        """Sort the scores these strategies rank by now (startup, benchmarks), not on first TopK."""
        wanted = {getattr(strategies.get(name), "rank_score", None) for name in strategy_names} - {None}
        with self.lock:
            for s in (self.live, self.next):
                if s is not None:
                    s.rank.wanted |= wanted
            self._refresh(self.live, wait)

    def _ranked(self, s: ScoreSet, name: str, m: int, available: np.ndarray) -> np.ndarray | None:
        """``m`` best available rows by score ``name`` from the rankings; None until sorted."""
        with self.lock:
            s.rank.wanted.add(name)
            self._refresh(s)
            return s.rank.top(name, m, available, lambda rows: s.values(name, rows))

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
                    return s.scores_of(np.array([row]), self.ids, self.model_name)[0]
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
            available[[r for r in map(self.rows.get, exclude) if r is not None]] = False
            cols = {name: live.cols[name][:n] for name in _SCALARS}
            probs, emb = live.probabilities[:n], live.embedding_rows(n)
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
        seeds = self._seeds(live, np.random.default_rng(seed)) \
            if "embeddings" in strategies.NEEDS.get(used, ()) else None
        pool = strategies.Pool(
            probabilities=probs if live.classes else None, entropy=cols["entropy"],
            bald=cols["bald"] if has_bald else None, embeddings=emb if live.dim else None,
            labeled_embeddings=seeds,
            least_confidence=cols["least_confidence"], margin=cols["margin"], available=available,
            ranked=lambda name, m: self._ranked(live, name, m, available))
        rows = strat.select(pool, k, np.random.default_rng(seed))
        return Selection(rows, used, live.version, int(np.count_nonzero(available)))

    def _seeds(self, live: ScoreSet, rng: np.random.Generator) -> np.ndarray | None:
        """Embeddings of labeled rows scored in ``live`` (k-center seeds), at most MAX_SEEDS of them."""
        with self.lock:
            rows = self._labeled_rows[: self._n_labeled]
            if rows.shape[0] > MAX_SEEDS:
                rows = rows[rng.choice(rows.shape[0], MAX_SEEDS, replace=False)]
            rows = np.sort(rows[live.ok[rows]])
            return live.embedding_rows(live.cap)[rows] if rows.size and live.dim else None

    def scores_of_rows(self, rows: np.ndarray, version: int) -> list[common_pb2.FrameScore]:
        with self.lock:
            live = self.live if self.live.version == version else (self.next or self.live)
            return live.scores_of(rows, self.ids, self.model_name)

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
                arrays[f"{tag}_emb_scale"] = s.emb_scale[:n]
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
            pool.removed[:n], pool.partition[:n] = z["removed"], z["partition"]
            for row in np.flatnonzero(z["labeled"]).tolist():
                pool._label(row)
            pool.target_version = int(meta["target_version"])
            pool.offsets = {k: int(v) for k, v in meta["offsets"].items()}
            pool.pending_labels = set(meta["pending_labels"])
            for tag, info in meta["sets"].items():
                s = ScoreSet(int(info["version"]), pool.cap)
                s.has_bald = bool(info["has_bald"])
                probs, emb = z[f"{tag}_probabilities"], z[f"{tag}_embeddings"]
                s._shape(probs.shape[1], emb.shape[1])
                s.ok[:n], s.predicted[:n] = z[f"{tag}_ok"], z[f"{tag}_predicted"]
                s.probabilities[:n] = probs
                if f"{tag}_emb_scale" in z:
                    s.embeddings[:n], s.emb_scale[:n] = emb, z[f"{tag}_emb_scale"]
                elif emb.shape[1]:  # a snapshot from before int8 embeddings (float16)
                    for lo in range(0, n, 65536):
                        s.store_embeddings(slice(lo, min(n, lo + 65536)), emb[lo: lo + 65536])
                for name in _SCALARS:
                    s.cols[name][:n] = z[f"{tag}_{name}"]
                setattr(pool, tag, s)
        return pool
