"""``lumenal bench al|system``: label efficiency and system throughput, measured in one run."""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

QUICK = {"budget": 400, "seeds": "0", "candidates": 2000, "mc_samples": 10, "pool_size": 20000,
         "test_size": 2000, "random_max": 400,
         "strategies": "random,margin,diverse_margin,modal_uncertainty"}


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def al_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lumenal bench al", description=(
        "Simulated-oracle pool-based active learning: every Lumenal strategy vs random sampling "
        "vs modAL uncertainty sampling, same pool, test set, model, recipe and seeds."))
    p.add_argument("--dataset", help="image folder <class>/<image> (default: Fashion-MNIST from "
                                     "the Debian package dataset-fashion-mnist)")
    p.add_argument("--image-size", type=int, default=64, help="resize folder images to this (default 64)")
    p.add_argument("--channels", type=int, default=3, choices=(1, 3), help="folder images: 1 or 3 channels")
    p.add_argument("--strategies", help="comma list, or 'all' for every Lumenal strategy + "
                                        "modal_uncertainty (default: random, margin, entropy, bald, "
                                        "kcenter, badge, diverse_margin, modal_uncertainty)")
    p.add_argument("--workers", type=int, default=1,
                   help="parallel processes, one (strategy, seed) run each, cpus // N TensorFlow threads "
                        "each (default 1: on a shared 2-core host 2 workers were not faster)")
    p.add_argument("--seeds", help="comma list of seeds (default 0,1,2)")
    p.add_argument("--initial", type=int, help="random initial labels (default 100)")
    p.add_argument("--batch", type=int, help="labels per round (default 100)")
    p.add_argument("--budget", type=int, help="label budget (default 2000)")
    p.add_argument("--candidates", type=int, help="random unlabeled candidates scored per round (default 5000)")
    p.add_argument("--mc-samples", type=int, help="MC-dropout passes for BALD (default 20)")
    p.add_argument("--random-max", type=int, help="random keeps labeling past the budget up to this many "
                                                  "labels until it reaches the top threshold (default 2x budget)")
    p.add_argument("--pool-size", type=int, help="use a random subset of the pool of this size")
    p.add_argument("--test-size", type=int, help="fixed stratified subset of the test set (default 5000, "
                                                 "half of Fashion-MNIST's: evaluation is a third of the "
                                                 "run time; 0 = the whole test set)")
    p.add_argument("--filters", help="network: conv widths per block, comma list (default 32,64,128)")
    p.add_argument("--epochs", type=int, help="recipe: epochs per round")
    p.add_argument("--min-steps", type=int, help="recipe: at least this many gradient steps per round")
    p.add_argument("--no-warm-start", action="store_true", help="recipe: retrain from scratch each round")
    p.add_argument("--no-augment", action="store_true", help="recipe: no shifts/flips")
    p.add_argument("--class-balance", action="store_true", help="recipe: inverse-frequency class weights")
    p.add_argument("--no-class-balance", action="store_true", help="recipe: plain loss (the default; kept so "
                                                                   "documented commands still run)")
    p.add_argument("--quick", action="store_true", help="small smoke run (< 5 min on 2 cores): "
                   + ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    p.add_argument("--json", type=Path, help="write every number here")
    p.add_argument("--plot", type=Path, help="write the learning curves (PNG) here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--merge", type=Path, nargs="+", metavar="JSON",
                   help="combine earlier --json outputs of the same configuration (e.g. strategies or "
                        "seeds run as separate processes) into one report; runs nothing")
    return p


def merge(paths: list[Path]) -> tuple[dict[str, object], object, list[object]]:
    """Raw runs of several JSON outputs; refuses when dataset or settings differ."""
    from lumenal.bench.al import Config, Round, RunResult
    from lumenal.bench.recipe import Recipe

    docs = [json.loads(p.read_text()) for p in paths]
    first = docs[0]
    fixed = {k: v for k, v in first["config"].items() if k not in ("strategies", "seeds")}
    for p, d in zip(paths[1:], docs[1:], strict=True):
        other = {k: v for k, v in d["config"].items() if k not in ("strategies", "seeds")}
        if other != fixed or d["dataset"] != first["dataset"]:
            raise ValueError(f"{p}: different dataset or settings than {paths[0]}; refusing to merge")
    strategies = list(dict.fromkeys(s for d in docs for s in d["config"]["strategies"]))
    seeds = sorted({int(s) for d in docs for s in d["config"]["seeds"]})
    raw = {k: tuple(v) if isinstance(v, list) else v for k, v in fixed.items() if k != "recipe"}
    cfg = Config(strategies=tuple(strategies), seeds=tuple(seeds), recipe=Recipe(**fixed["recipe"]), **raw)
    runs = [RunResult(r["strategy"], r["seed"], [Round(**x) for x in r["rounds"]]) for d in docs for r in d["runs"]]
    keys = [(r.strategy, r.seed) for r in runs]
    if len(set(keys)) != len(keys):
        raise ValueError("the same strategy and seed appear in more than one file; refusing to merge")
    return first, cfg, runs


def _pick(value: object, quick: bool, key: str, default: object) -> object:
    if value is not None:
        return value
    return QUICK.get(key, default) if quick else default


def config_from_args(args: argparse.Namespace) -> tuple[object, int | None, int | None]:
    from lumenal.bench.al import DEFAULT_STRATEGIES, MODAL, Config
    from lumenal.bench.recipe import Recipe
    from lumenal.ml import strategies

    q = args.quick
    names = _csv(str(_pick(args.strategies, q, "strategies", ",".join(DEFAULT_STRATEGIES))))
    if names == ["all"]:
        names = strategies.names() + [MODAL]
    for name in names:
        if name != MODAL:
            strategies.get(name)  # UnknownStrategy (ValueError) names the known ones
    budget = int(_pick(args.budget, q, "budget", 2000))
    recipe = Recipe()
    if args.epochs is not None:
        recipe = replace(recipe, epochs=args.epochs)
    if args.min_steps is not None:
        recipe = replace(recipe, min_steps=args.min_steps)
    if args.no_warm_start:
        recipe = replace(recipe, warm_start=False)
    if args.no_augment:
        recipe = replace(recipe, augment=False)
    if args.class_balance and args.no_class_balance:
        raise ValueError("--class-balance and --no-class-balance contradict each other")
    if args.class_balance:
        recipe = replace(recipe, class_balance=True)
    cfg = Config(strategies=tuple(names),
                 seeds=tuple(int(s) for s in _csv(str(_pick(args.seeds, q, "seeds", "0,1,2")))),
                 initial=int(_pick(args.initial, q, "initial", 100)),
                 batch=int(_pick(args.batch, q, "batch", 100)), budget=budget,
                 candidates=int(_pick(args.candidates, q, "candidates", 5000)),
                 mc_samples=int(_pick(args.mc_samples, q, "mc_samples", 20)),
                 filters=tuple(int(f) for f in _csv(args.filters)) if args.filters else Config.filters,
                 random_max=int(_pick(args.random_max, q, "random_max", 2 * budget)), recipe=recipe)
    if cfg.initial < 1 or cfg.batch < 1 or cfg.budget < cfg.initial or not cfg.seeds:
        raise ValueError("need initial >= 1, batch >= 1, budget >= initial and at least one seed")
    return cfg, _pick(args.pool_size, q, "pool_size", None), _pick(args.test_size, q, "test_size", 5000)


def load_dataset(path: str | None, image_size: int, channels: int, pool_size: int | None,
                 test_size: int | None) -> object:
    """The bench's dataset (module-level, so worker processes can load it themselves)."""
    from lumenal.bench import data

    return subset(data.load(path, image_size, channels), pool_size, test_size)


def subset(ds: object, pool_size: int | None, test_size: int | None) -> object:
    """Fixed-seed subsets so quick runs stay comparable with each other."""
    import numpy as np

    from lumenal.bench.data import Dataset, stratified_test_mask

    x_pool, y_pool, x_test, y_test = ds.x_pool, ds.y_pool, ds.x_test, ds.y_test
    if pool_size and pool_size < len(y_pool):
        keep = np.sort(np.random.default_rng(12345).choice(len(y_pool), pool_size, replace=False))
        x_pool, y_pool = x_pool[keep], y_pool[keep]
    if test_size and test_size < len(y_test):
        mask = stratified_test_mask(y_test, test_size / len(y_test), 54321)
        x_test, y_test = x_test[mask], y_test[mask]
    return Dataset(ds.name, ds.class_names, x_pool, y_pool, x_test, y_test)


def machine() -> dict[str, object]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "platform": platform.platform(), "gpu": False}


def main_al(argv: list[str]) -> int:
    args = al_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from lumenal.bench import al

    if args.merge:
        return main_merge(args)

    try:
        cfg, pool_size, test_size = config_from_args(args)
        load = functools.partial(load_dataset, args.dataset, args.image_size, args.channels, pool_size, test_size)
        ds = load()
    except ValueError as exc:  # DatasetError, UnknownStrategy, bad numbers
        print(f"lumenal bench al: {exc}", file=sys.stderr)
        return 2
    workers = max(1, args.workers)
    if args.no_progress:  # one JSON line per round instead of the bar
        from lumenal.core import logs

        logs.setup("bench")
    print(f"dataset {ds.name}: pool {len(ds.y_pool)}, test {len(ds.y_test)}, "
          f"{len(ds.class_names)} classes, {ds.input_size}x{ds.input_size}x{ds.channels}")
    print(f"strategies: {', '.join(cfg.strategies)}; seeds {list(cfg.seeds)}; "
          f"initial {cfg.initial}, batch {cfg.batch}, budget {cfg.budget}, candidates {cfg.candidates}; "
          f"{workers} worker process(es)")
    started = time.time()
    cpu0 = _cpu_s()
    doc = {"benchmark": "al", "argv": ["lumenal", "bench", "al", *argv], "dataset": ds.describe(),
           "config": cfg.to_dict(), "machine": machine(), "started": started, "workers": workers}
    loads = [os.getloadavg()[0]]

    def checkpoint(runs: list[al.RunResult]) -> None:
        if args.json:  # partial results survive an interrupted run
            from lumenal.bench import report

            partial = {**doc, "partial": True, "elapsed_s": time.time() - started,
                       **report.summarize(runs, cfg), "runs": report.raw(runs)}
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(partial, indent=1))

    def on_run(runs: list[al.RunResult]) -> None:
        loads.append(os.getloadavg()[0])
        checkpoint(runs)

    results = al.run_all(ds, cfg, progress=not args.no_progress, on_run=on_run, workers=workers, load=load)
    doc.update({"partial": False, "elapsed_s": time.time() - started,
                "run_time": run_time(results, time.time() - started, _cpu_s() - cpu0, loads + [os.getloadavg()[0]])})
    print("\n" + describe_run_time(doc["run_time"]))
    write_outputs(args, doc, cfg, results)
    return 0


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (the worker processes)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_time(results: list[object], wall_s: float, cpu_s: float, loads: list[float]) -> dict[str, object]:
    """Wall and CPU time of the whole run, per round, and the host's load while it ran."""
    rounds = sum(len(r.rounds) for r in results)
    return {"wall_s": wall_s, "cpu_s": cpu_s, "rounds": rounds, "wall_s_per_round": wall_s / max(rounds, 1),
            "cpu_s_per_round": cpu_s / max(rounds, 1), "cpus": os.cpu_count(),
            "load_1min": {"start": loads[0], "end": loads[-1], "mean": sum(loads) / len(loads), "max": max(loads)}}


def describe_run_time(t: dict[str, object]) -> str:
    load = t["load_1min"]
    return (f"total {t['wall_s'] / 60:.1f} min wall, {t['cpu_s'] / 60:.1f} min CPU, {t['rounds']} rounds: "
            f"{t['wall_s_per_round']:.1f} s wall / {t['cpu_s_per_round']:.1f} s CPU per round; "
            f"load average (1 min) mean {load['mean']:.1f}, max {load['max']:.1f} on {t['cpus']} CPUs")


def main_merge(args: argparse.Namespace) -> int:
    try:
        first, cfg, results = merge(args.merge)
    except (ValueError, KeyError, OSError) as exc:
        print(f"lumenal bench al --merge: {exc}", file=sys.stderr)
        return 2
    doc = {k: first[k] for k in ("benchmark", "dataset", "machine", "started")}
    doc.update({"config": cfg.to_dict(), "merged_from": [str(p) for p in args.merge],
                "argv": [json.loads(p.read_text())["argv"] for p in args.merge],
                "elapsed_s": sum(json.loads(p.read_text())["elapsed_s"] for p in args.merge)})
    write_outputs(args, doc, cfg, results)
    return 0


def write_outputs(args: argparse.Namespace, doc: dict[str, object], cfg: object, results: list[object]) -> None:
    from lumenal.bench import report

    summary = report.summarize(results, cfg)
    print(report.table(summary, cfg))
    doc.update({**summary, "runs": report.raw(results)})
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1))
        print(f"wrote {args.json}")
    if args.plot:
        report.plot(summary, cfg, args.plot, f"{doc['dataset']['name']}: test accuracy vs labels "
                    f"({len(cfg.seeds)} seed{'s' if len(cfg.seeds) > 1 else ''}, band = min-max)")
        print(f"wrote {args.plot}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: lumenal bench {al|system} [options]\n\n"
              "  al      label efficiency: Lumenal strategies vs random vs modAL (simulated oracle)\n"
              "  system  throughput and latency of the running stack vs the hardware's limit")
        return 0
    if argv[0] == "al":
        return main_al(argv[1:])
    if argv[0] == "system":
        from lumenal.bench import system

        return system.main(argv[1:])
    print(f"lumenal bench: unknown benchmark {argv[0]!r} (al or system)", file=sys.stderr)
    return 2
