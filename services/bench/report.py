"""Numbers, table and plot for ``bench al``: computed from the raw per-round results only.

Definitions (also written into the JSON so a reader never has to guess):
- accuracy/macro-F1 at N labels: the round with exactly N labels (or the last one below N);
- labels to reach T: per seed, the first round whose test accuracy is >= T; a strategy's
  value is the mean over seeds when every seed reached T, otherwise a lower bound;
- area under the learning curve: trapezoid of test accuracy over [initial, budget] labels,
  divided by the width, i.e. the mean accuracy over the labeling budget (0..1);
- label ratio: labels the best Lumenal strategy needs to reach T / labels random needs,
  both in the same run. Random keeps labeling past the budget (up to ``random_max``) until it
  reaches T, so the ratio is exact when it does; when it does not, the ratio is reported
  as an upper bound ("<").
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from lumenal.bench.al import MODAL, Config, RunResult

DEFINITIONS = {
    "at_labels": "test accuracy / macro-F1 of the round with exactly N labels (else the last round below N)",
    "labels_to": "per seed: first labeled-set size whose test accuracy >= T; 'mean' only when every seed reached T, "
                 "else 'lower_bound' = largest size seen",
    "auc": "trapezoid area of test accuracy vs labels over [initial, budget], divided by (budget - initial)",
    "label_ratio": "best Lumenal strategy's labels_to[T].mean / random's, same run; random continues past the "
                   "budget up to random_max until it reaches T; kind='upper_bound' if random never reached T "
                   "(ratio computed against random's largest size seen); kind='lower_bound' if the best strategy "
                   "never reached T but random did (its budget / random's labels)",
    "best_lumenal": "the Lumenal strategy (not random) with the fewest mean labels to the top threshold; "
                    "ties and strategies that never reach it are ranked by auc",
    "time_per_round_s": "mean wall time per round of retraining + scoring/selecting (test evaluation excluded)",
}


def _at(run: RunResult, n: int) -> tuple[float, float] | None:
    rows = [r for r in run.rounds if r.labels <= n]
    return (rows[-1].accuracy, rows[-1].macro_f1) if rows else None


def _first_reach(run: RunResult, thr: float) -> int | None:
    return next((r.labels for r in run.rounds if r.accuracy >= thr), None)


def _auc(run: RunResult, cfg: Config) -> float:
    labels, acc, _ = run.curve(cfg.budget)
    if len(labels) < 2:
        return float(acc[0]) if len(acc) else 0.0
    area = float(np.sum((acc[1:] + acc[:-1]) / 2 * np.diff(labels)))
    return area / float(labels[-1] - labels[0])


def _stats(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "min": float(arr.min()), "max": float(arr.max())}


def summarize_strategy(runs: list[RunResult], cfg: Config) -> dict[str, object]:
    out: dict[str, object] = {"seeds": [r.seed for r in runs]}
    at: dict[str, object] = {}
    for n in cfg.checkpoints:
        vals = [v for v in (_at(r, n) for r in runs) if v is not None]
        if vals:
            at[str(n)] = {"accuracy": _stats([v[0] for v in vals]), "macro_f1": _stats([v[1] for v in vals])}
    out["at_labels"] = at
    reach: dict[str, object] = {}
    for thr in cfg.thresholds:
        per_seed = [_first_reach(r, thr) for r in runs]
        entry: dict[str, object] = {"per_seed": per_seed, "reached": sum(v is not None for v in per_seed),
                                    "of": len(runs), "mean": None, "lower_bound": None}
        if all(v is not None for v in per_seed):
            entry["mean"] = float(np.mean(per_seed))
        else:
            entry["lower_bound"] = max(r.rounds[-1].labels for r in runs)
        reach[f"{thr:.2f}"] = entry
    out["labels_to"] = reach
    out["auc"] = _stats([_auc(r, cfg) for r in runs])
    grid = sorted({x.labels for r in runs for x in r.rounds})
    curve = []
    for n in grid:
        accs = [x.accuracy for r in runs for x in r.rounds if x.labels == n]
        f1s = [x.macro_f1 for r in runs for x in r.rounds if x.labels == n]
        curve.append({"labels": n, "seeds": len(accs), "accuracy": _stats(accs), "macro_f1": _stats(f1s)})
    out["curve"] = curve
    rounds = [x for r in runs for x in r.rounds]
    out["time_per_round_s"] = float(np.mean([x.fit_s + x.select_s for x in rounds]))
    out["fit_s"] = float(np.mean([x.fit_s for x in rounds]))
    out["select_s"] = float(np.mean([x.select_s for x in rounds if x.select_s > 0] or [0.0]))
    out["eval_s"] = float(np.mean([x.eval_s for x in rounds]))
    return out


def _reach_key(summary: dict[str, object], thr: float) -> float:
    entry = summary["labels_to"][f"{thr:.2f}"]  # type: ignore[index]
    return entry["mean"] if entry["mean"] is not None else math.inf


def compare(per: dict[str, dict[str, object]], cfg: Config) -> dict[str, object]:
    """Best Lumenal strategy vs random (label ratio) and vs modAL (curve area)."""
    top = max(cfg.thresholds)
    lumenal = [s for s in per if s not in ("random", MODAL)]
    out: dict[str, object] = {"threshold": top}
    if not lumenal:
        return out
    best = min(lumenal, key=lambda s: (_reach_key(per[s], top), -per[s]["auc"]["mean"]))  # type: ignore[index]
    out["best_lumenal"] = best
    ratios: dict[str, object] = {}
    if "random" in per:
        for thr in cfg.thresholds:
            b = per[best]["labels_to"][f"{thr:.2f}"]  # type: ignore[index]
            r = per["random"]["labels_to"][f"{thr:.2f}"]  # type: ignore[index]
            if b["mean"] is None and r["mean"] is not None:
                ratios[f"{thr:.2f}"] = {"ratio": b["lower_bound"] / r["mean"], "kind": "lower_bound",
                                        "best_labels_lower_bound": b["lower_bound"], "random_labels": r["mean"],
                                        "why": f"{best} did not reach {thr:.2f} in every seed"}
            elif b["mean"] is None:
                ratios[f"{thr:.2f}"] = {"ratio": None, "kind": "undefined",
                                        "why": f"neither {best} nor random reached {thr:.2f} in every seed"}
            elif r["mean"] is not None:
                ratios[f"{thr:.2f}"] = {"ratio": b["mean"] / r["mean"], "kind": "exact",
                                        "best_labels": b["mean"], "random_labels": r["mean"]}
            else:
                ratios[f"{thr:.2f}"] = {"ratio": b["mean"] / r["lower_bound"], "kind": "upper_bound",
                                        "best_labels": b["mean"], "random_labels_lower_bound": r["lower_bound"]}
        out["label_ratio"] = ratios
        top_ratio = ratios[f"{top:.2f}"]
        out["target_label_ratio_le_0_6"] = (top_ratio["ratio"] is not None and top_ratio["kind"] != "lower_bound"
                                            and top_ratio["ratio"] <= 0.6)
    if MODAL in per:
        b_auc, m_auc = per[best]["auc"]["mean"], per[MODAL]["auc"]["mean"]  # type: ignore[index]
        out["auc_best"] = b_auc
        out["auc_modal"] = m_auc
        out["target_auc_beats_modal"] = bool(b_auc > m_auc)
    return out


def summarize(results: list[RunResult], cfg: Config) -> dict[str, object]:
    by: dict[str, list[RunResult]] = defaultdict(list)
    for r in results:
        by[r.strategy].append(r)
    per = {name: summarize_strategy(by[name], cfg) for name in cfg.strategies if by[name]}
    return {"strategies": per, "comparison": compare(per, cfg), "definitions": DEFINITIONS}


def raw(results: list[RunResult]) -> list[dict[str, object]]:
    return [{"strategy": r.strategy, "seed": r.seed,
             "rounds": [vars(x) for x in r.rounds]} for r in results]


def table(summary: dict[str, object], cfg: Config) -> str:
    """The printed table: one row per strategy, means over seeds."""
    per = summary["strategies"]  # type: ignore[index]
    cps = [str(n) for n in cfg.checkpoints if n <= cfg.budget]
    head = ["strategy"] + [f"acc@{n}" for n in cps] + [f"f1@{cps[-1]}" if cps else "f1"] + \
        [f"to{int(t * 100)}%" for t in cfg.thresholds] + ["AUC", "s/round"]
    rows = [head]
    for name, s in per.items():
        at = s["at_labels"]
        row = [name] + [f"{at[n]['accuracy']['mean']:.3f}" if n in at else "-" for n in cps]
        row.append(f"{at[cps[-1]]['macro_f1']['mean']:.3f}" if cps and cps[-1] in at else "-")
        for t in cfg.thresholds:
            e = s["labels_to"][f"{t:.2f}"]
            row.append(f"{e['mean']:.0f}" if e["mean"] is not None else f">{e['lower_bound']}")
        row += [f"{s['auc']['mean']:.4f}", f"{s['time_per_round_s']:.1f}"]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    comp = summary["comparison"]  # type: ignore[index]
    if "best_lumenal" in comp:
        lines.append("")
        lines.append(f"best Lumenal strategy: {comp['best_lumenal']}")
        for thr, r in comp.get("label_ratio", {}).items():
            if r["ratio"] is None:
                lines.append(f"  label ratio to {thr}: undefined ({r['why']})")
            else:
                sign = {"upper_bound": "<", "lower_bound": ">"}.get(r["kind"], "")
                lines.append(f"  label ratio to {thr} vs random: {sign}{r['ratio']:.2f} ({r['kind']})")
        if "auc_modal" in comp:
            lines.append(f"  AUC {comp['auc_best']:.4f} vs modAL uncertainty {comp['auc_modal']:.4f}")
    return "\n".join(lines)


def plot(summary: dict[str, object], cfg: Config, path: Path, title: str) -> None:
    """Mean accuracy per strategy with the seeds' min-max band; thresholds as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    per = summary["strategies"]  # type: ignore[index]
    best = summary["comparison"].get("best_lumenal")  # type: ignore[union-attr]
    for name, s in per.items():
        pts = [p for p in s["curve"] if p["seeds"] == len(s["seeds"])]
        x = np.array([p["labels"] for p in pts])
        mean = np.array([p["accuracy"]["mean"] for p in pts])
        lo = np.array([p["accuracy"]["min"] for p in pts])
        hi = np.array([p["accuracy"]["max"] for p in pts])
        style = {"lw": 2.4} if name in (best, "random", MODAL) else {"lw": 1.2, "alpha": 0.85}
        if name == "random":
            style.update(color="black", ls="--")
        elif name == MODAL:
            style.update(color="tab:red", ls="-.")
        (line,) = ax.plot(x, mean, label=name, **style)
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.12, lw=0)
    for t in cfg.thresholds:
        ax.axhline(t, color="grey", lw=0.8, ls=":")
    ax.axvline(cfg.budget, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("labeled frames")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right", ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
