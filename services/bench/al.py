"""Simulated-oracle, pool-based active learning: Lumenal strategies vs random vs modAL.

Per seed, every strategy starts from the same random initial labels and the same
initial weights, and trains the same network with the same ``Recipe``; each
round it labels ``batch`` frames chosen from a random candidate subset of the
unlabeled pool (the oracle answers with the ground truth), retrains, and is
evaluated on the fixed test set. Lumenal strategies are called exactly as the
inference service calls them (``lumenal.ml.strategies`` on a ``Pool`` filled by
``lumenal.ml.model.predict_all``); modAL drives the same network through
``ActiveLearner`` + ``uncertainty_sampling``.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
import warnings
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from sklearn.metrics import f1_score

from lumenal.bench.data import Dataset
from lumenal.bench.recipe import Recipe

if TYPE_CHECKING:
    from lumenal.bench.learner import KerasLearner

log = logging.getLogger(__name__)

MODAL = "modal_uncertainty"
# The default run: random, modAL and the Lumenal strategies that select differently. Left out
# (still selectable, ``--strategies all``): least_confidence is modAL's criterion, and
# diverse_entropy / diverse_bald share diverse_margin's design with another score.
DEFAULT_STRATEGIES = ("random", "margin", "entropy", "bald", "kcenter", "badge", "diverse_margin", MODAL)
CHECKPOINTS = (300, 500, 1000, 1500, 2000)
THRESHOLDS = (0.80, 0.85)


@dataclass(frozen=True)
class Config:
    """One benchmark run; every number lands in the JSON so a run can be reproduced."""

    strategies: tuple[str, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    initial: int = 100
    batch: int = 100
    budget: int = 2000
    candidates: int = 5000
    mc_samples: int = 20
    random_max: int = 4000          # random keeps labeling past the budget until it reaches the top threshold
    checkpoints: tuple[int, ...] = CHECKPOINTS
    thresholds: tuple[float, ...] = THRESHOLDS
    filters: tuple[int, ...] = (32, 64, 128)
    convs_per_block: int = 1
    dropout: float = 0.3
    recipe: Recipe = field(default_factory=Recipe)

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["recipe"] = self.recipe.to_dict()
        return out


@dataclass
class Round:
    labels: int
    accuracy: float
    macro_f1: float
    fit_s: float
    select_s: float
    eval_s: float


@dataclass
class RunResult:
    strategy: str
    seed: int
    rounds: list[Round]

    def curve(self, upto: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = [r for r in self.rounds if r.labels <= upto]
        return (np.array([r.labels for r in rows]), np.array([r.accuracy for r in rows]),
                np.array([r.macro_f1 for r in rows]))


def model_spec(ds: Dataset, cfg: Config) -> object:
    from lumenal.ml.model import ModelSpec

    return ModelSpec(class_names=ds.class_names, input_size=ds.input_size, channels=ds.channels,
                     mc_samples=cfg.mc_samples, dropout=cfg.dropout, filters=cfg.filters,
                     convs_per_block=cfg.convs_per_block, name="bench")


def initial_labels(ds: Dataset, cfg: Config, seed: int) -> np.ndarray:
    """The same random initial labels for every strategy of a seed."""
    return np.random.default_rng([seed, 0]).choice(len(ds.y_pool), cfg.initial, replace=False)


class LumenalDriver:
    """Selects with ``lumenal.ml.strategies`` on a Pool scored like the inference service scores."""

    def __init__(self, name: str, learner: KerasLearner, ds: Dataset, cfg: Config) -> None:
        from lumenal.ml import strategies

        self.strategy = strategies.get(name)
        self.needs = set(strategies.NEEDS.get(name, ("probabilities", "bald", "embeddings")))
        self.learner, self.ds, self.cfg = learner, ds, cfg

    def fit(self, labeled: np.ndarray, new: np.ndarray) -> None:
        self.learner.fit(self.ds.x_pool[labeled], self.ds.y_pool[labeled])

    def select(self, candidates: np.ndarray, labeled: np.ndarray, k: int,
               rng: np.random.Generator) -> np.ndarray:
        from lumenal.ml.strategies import Pool

        pool = Pool(size=len(candidates))
        if self.needs:
            scores = self.learner.score_all(self.ds.x_pool[candidates], self.cfg.mc_samples)
            pool.probabilities = scores["probabilities"]
            pool.entropy = scores["entropy"]
            pool.bald = scores["bald"]
            pool.embeddings = scores["embedding"]
            if "embeddings" in self.needs:
                pool.labeled_embeddings = self.learner.embed(self.ds.x_pool[labeled])
        return candidates[self.strategy.select(pool, k, rng)]


class ModalDriver:
    """modAL ``ActiveLearner`` with ``uncertainty_sampling`` over the same KerasLearner."""

    def __init__(self, learner: KerasLearner, ds: Dataset) -> None:
        self.learner, self.ds = learner, ds
        self.active = None

    def fit(self, labeled: np.ndarray, new: np.ndarray) -> None:
        from modAL.models import ActiveLearner
        from modAL.uncertainty import uncertainty_sampling

        if self.active is None:
            # modAL 0.4.2.1 still passes force_all_finite (renamed in scikit-learn 1.6).
            warnings.filterwarnings("ignore", message=".*force_all_finite.*", category=FutureWarning)
            self.active = ActiveLearner(estimator=self.learner, query_strategy=uncertainty_sampling,
                                        X_training=self.ds.x_pool[labeled], y_training=self.ds.y_pool[labeled])
        else:
            self.active.teach(self.ds.x_pool[new], self.ds.y_pool[new])

    def select(self, candidates: np.ndarray, labeled: np.ndarray, k: int,
               rng: np.random.Generator) -> np.ndarray:
        idx, _ = self.active.query(self.ds.x_pool[candidates], n_instances=k)
        return candidates[np.asarray(idx)]


def evaluate(learner: KerasLearner, ds: Dataset) -> tuple[float, float]:
    pred = learner.predict(ds.x_test)
    return float((pred == ds.y_test).mean()), float(f1_score(ds.y_test, pred, average="macro"))


def run_one(ds: Dataset, cfg: Config, name: str, seed: int,
            on_round: Callable[[Round], None] = lambda r: None) -> RunResult:
    """One strategy, one seed: label until the budget (random: until the top threshold too)."""
    from lumenal.bench.learner import KerasLearner

    learner = KerasLearner(model_spec(ds, cfg), cfg.recipe, seed)
    driver = ModalDriver(learner, ds) if name == MODAL else LumenalDriver(name, learner, ds, cfg)
    labeled = initial_labels(ds, cfg, seed)
    new = labeled
    is_labeled = np.zeros(len(ds.y_pool), bool)
    is_labeled[labeled] = True
    rounds: list[Round] = []
    while True:
        t0 = time.perf_counter()
        driver.fit(labeled, new)
        t1 = time.perf_counter()
        acc, f1 = evaluate(learner, ds)
        t2 = time.perf_counter()
        n = len(labeled)
        done = n >= cfg.budget and not (name == "random" and n < cfg.random_max
                                         and acc < max(cfg.thresholds))
        select_s = 0.0
        if not done and not is_labeled.all():
            rng = np.random.default_rng([seed, n, 1])
            unlabeled = np.flatnonzero(~is_labeled)
            cand = unlabeled if len(unlabeled) <= cfg.candidates else \
                np.sort(rng.choice(unlabeled, cfg.candidates, replace=False))
            new = driver.select(cand, labeled, min(cfg.batch, len(cand)), rng)
            select_s = time.perf_counter() - t2
            if len(np.unique(new)) != len(new) or is_labeled[new].any():
                raise RuntimeError(f"{name} picked duplicate or already-labeled frames")
            is_labeled[new] = True
            labeled = np.concatenate([labeled, new])
        rounds.append(Round(n, acc, f1, t1 - t0, select_s, t2 - t1))
        on_round(rounds[-1])
        if done or is_labeled.all():
            return RunResult(name, seed, rounds)


def planned_rounds(cfg: Config) -> int:
    return (cfg.budget - cfg.initial + cfg.batch - 1) // cfg.batch + 1


def run_all(ds: Dataset, cfg: Config, progress: bool = True,
            on_run: Callable[[list[RunResult]], None] = lambda runs: None,
            workers: int = 1, load: Callable[[], Dataset] | None = None) -> list[RunResult]:
    """Every (seed, strategy) run; results ordered seeds outer, strategies inner.

    ``on_run`` sees the finished runs after each (strategy, seed), so a checkpoint survives
    an interrupted benchmark. With ``workers`` > 1 the runs go to that many processes, each
    loading the dataset with ``load`` and using ``cpus // workers`` TensorFlow threads.
    """
    from tqdm import tqdm

    order = [(seed, name) for seed in cfg.seeds for name in cfg.strategies]
    done: dict[tuple[int, str], RunResult] = {}
    total = planned_rounds(cfg) * len(order)
    with tqdm(total=total, disable=not progress, unit="round", dynamic_ncols=True) as bar:
        def tick(name: str, seed: int, r: Round) -> None:
            log.info("round", extra={"strategy": name, "seed": seed, **vars(r)})
            if r.labels > cfg.budget:  # random's extension beyond the budget
                bar.total += 1
            bar.set_postfix_str(f"{name} seed={seed} labels={r.labels} acc={r.accuracy:.3f}")
            bar.update(1)

        def finished(key: tuple[int, str], result: RunResult) -> None:
            done[key] = result
            on_run([done[k] for k in order if k in done])

        if workers <= 1 or len(order) == 1:
            for seed, name in order:
                finished((seed, name), run_one(ds, cfg, name, seed, lambda r, n=name, s=seed: tick(n, s, r)))
        else:
            if load is None:
                raise ValueError("parallel runs need a dataset loader for the worker processes")
            _run_parallel(load, cfg, order, workers, tick, finished)
    return [done[k] for k in order]


_WORKER: dict[str, object] = {}


def _init_worker(load: Callable[[], Dataset], threads: int, queue: object) -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    _WORKER.update(ds=load(), queue=queue)


def _job(cfg: Config, name: str, seed: int) -> RunResult:
    queue = _WORKER["queue"]
    return run_one(_WORKER["ds"], cfg, name, seed, lambda r: queue.put((name, seed, r)))  # type: ignore[attr-defined]


def _run_parallel(load: Callable[[], Dataset], cfg: Config, order: list[tuple[int, str]], workers: int,
                  tick: Callable[[str, int, Round], None],
                  finished: Callable[[tuple[int, str], RunResult], None]) -> None:
    """(seed, strategy) runs on ``workers`` spawned processes; rounds stream back for the bar."""
    import os
    import queue as queues

    ctx = multiprocessing.get_context("spawn")  # no forked TensorFlow state
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ctx.Manager() as manager:
        rounds = manager.Queue()

        def drain() -> None:
            while True:
                try:
                    tick(*rounds.get_nowait())
                except queues.Empty:
                    return

        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(load, threads, rounds)) as pool:
            futures = {pool.submit(_job, cfg, name, seed): (seed, name) for seed, name in order}
            pending = set(futures)
            while pending:
                ready, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                drain()
                for f in ready:
                    finished(futures[f], f.result())
        drain()
