"""Training benchmark: label-to-serving latency, time per epoch, failed requests during the swap.

For each size N it starts an embedded stack in a temporary home (SeaweedFS, tansu,
modelserver, storage, labels, training as separate processes; no inference, so
annotators get frames in ingest order), ingests a SYNTHETIC demo video, and lets
simulated annotators label N frames over gRPC. The N-th label triggers the retrain
(``LUMENAL_TRAINING_RETRAIN_EVERY=N``). Two latencies are reported:

- ``label_to_serving_s``: the training service's own measure, from the trigger
  label's ``resolved_at`` to the model server reporting the new version AVAILABLE;
- ``observed_s``: measured here, from the last SubmitLabel returning to the first
  successful Predict against the new version.

A second retrain (10 % more labels, warm start) then runs while four Predict loops
(client retries off) count failed requests across the hot swap.

Called by ``lumenal bench system`` (the benchmark area) and runnable alone:
``python -m lumenal.training.bench --labels 1000 10000 --json out.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _wait(check, timeout_s: float, what: str, poll_s: float = 0.05) -> float:  # noqa: ANN001
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if check():
            return time.monotonic() - start
        time.sleep(poll_s)
    raise TimeoutError(f"{what}: not done after {timeout_s:.0f}s")


def _run_dict(run: object) -> dict:
    from lumenal.v1 import training_pb2

    return {"run_id": run.run_id, "state": training_pb2.RunState.Name(run.state), "version": run.version,
            "train_labels": run.train_labels, "val_labels": run.val_labels, "epochs": run.epochs,
            "duration_s": run.duration_s, "metrics": dict(run.metrics), "error": run.error}


def measure(labels: int, home: Path, video_size: int = 64, annotators: int = 3, timeout_s: float = 3600,
            progress: bool = False) -> dict:
    """One stack, N labels: the trigger-to-serving latency and a probed hot swap."""
    from lumenal.core.config import CommonSettings, from_env
    from lumenal.demo import loop
    from lumenal.ml.serving import ServingClient
    from lumenal.stack.supervisor import Stack, StackSettings
    from lumenal.v1 import training_pb2

    out: dict = {"labels": labels, "video": {"synthetic": True, "size": video_size}}
    settings = from_env(StackSettings, environ={"LUMENAL_STACK_BROKER_STORAGE": "memory"})
    stack = Stack(home, settings, free_ports=True, with_ui=False,
                  only=["modelserver", "storage", "labels", "training"])
    stack.extra_env.update({
        "LUMENAL_TRAINING_RETRAIN_EVERY": str(labels), "LUMENAL_TRAINING_MIN_INTERVAL_S": "0",
        "LUMENAL_LABELS_OVERLAP_FRACTION": "0", "LUMENAL_LABELS_INFERENCE_RETRY_S": "86400",
        "LUMENAL_LABELS_CLASS_NAMES": "informative,bubbles,blur,dark,debris",
        "LUMENAL_STORAGE_SAMPLE_FPS": "-1", "LUMENAL_STORAGE_DEDUP_THRESHOLD": "-2",
        "LUMENAL_MODELSERVER_POLL_S": "0.5", "LUMENAL_TRAINING_FRAME_CACHE_FRAMES": str(4 * labels)})
    try:
        t0 = time.perf_counter()
        stack.start()
        out["stack_start_s"] = time.perf_counter() - t0
        clients = loop.Clients(from_env(CommonSettings, environ=stack.client_env()))
        serving = ServingClient(clients.settings.modelserver_addr, timeout_s=10, retries=0)
        try:
            frames = int(labels * 1.15) + 50
            t0 = time.perf_counter()
            loop.ingest_demo_video(clients, frames, video_size, home / "video", progress)
            out["ingest_s"] = time.perf_counter() - t0
            oracle = loop.Oracle(clients, annotators).setup()
            t0 = time.perf_counter()
            since = time.time()
            out["labelled"] = oracle.label(labels, progress, desc=f"labelling {labels}")
            last_label = time.perf_counter()
            out["labelling_s"] = last_label - t0

            def answers(version: int) -> bool:
                try:
                    serving.predict(clients.settings.model_name, np.zeros((1, 64, 64, 3), np.float32),
                                    version=version)
                    return True
                except Exception:  # noqa: BLE001 - not served yet
                    return False

            _wait(lambda: answers(1), timeout_s, "first version answering Predict")
            out["observed_s"] = time.perf_counter() - last_label
            first = loop.wait_idle_after(clients, since, timeout_s)
            out["first_run"] = _run_dict(first)
            out["label_to_serving_s"] = first.metrics.get("label_to_serving_s")
            out["seconds_per_epoch"] = first.metrics.get("seconds_per_epoch")

            probes = [loop.PredictProbe(clients.settings.modelserver_addr, clients.settings.model_name).start()
                      for _ in range(4)]
            try:
                oracle.label(max(labels // 10, 20), progress, desc="labelling for the swap")
                since = time.time()
                clients.training.TriggerRetrain(training_pb2.TriggerRetrainRequest(reason="bench swap"),
                                                metadata=clients.md, timeout=30)
                second = loop.wait_idle_after(clients, since, timeout_s)
                time.sleep(2.0)
            finally:
                for p in probes:
                    p.stop()
            out["second_run"] = _run_dict(second)
            out["swap"] = {"promoted": second.state == training_pb2.RUN_STATE_PROMOTED,
                           "ok": sum(p.ok for p in probes), "failed": sum(p.failed for p in probes),
                           "versions_seen": sorted(set().union(*(p.versions for p in probes))),
                           "errors": sorted({e for p in probes for e in p.errors})[:5]}
        finally:
            serving.close()
            clients.close()
    finally:
        stack.stop()
    return out


def run(sizes: list[int], work: Path | None = None, progress: bool = False) -> dict:
    """``{"sizes": {N: result}}`` for each N (a failed size records its error, never a number)."""
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="lumenal-train-bench-", dir=work) as tmp:
        for n in sizes:
            try:
                results[str(n)] = measure(n, Path(tmp) / f"n{n}", progress=progress)
            except Exception as exc:  # noqa: BLE001 - report, do not invent numbers
                results[str(n)] = {"labels": n, "error": f"{type(exc).__name__}: {exc}"}
    return {"sizes": results}


def table(doc: dict) -> str:
    lines = [f"{'labels':>7} {'label->serving':>15} {'observed':>9} {'s/epoch':>8} {'epochs':>6} "
             f"{'run':>7} {'macro-F1':>8} {'swap failed':>11}"]
    for n, r in doc["sizes"].items():
        if "error" in r:
            lines.append(f"{n:>7} error: {r['error']}")
            continue
        f = r["first_run"]
        lines.append(f"{n:>7} {r['label_to_serving_s'] or float('nan'):>14.1f}s {r['observed_s']:>8.1f}s "
                     f"{r['seconds_per_epoch'] or float('nan'):>8.2f} {f['epochs']:>6} {f['duration_s']:>6.1f}s "
                     f"{f['metrics'].get('macro_f1', float('nan')):>8.3f} {r['swap']['failed']:>11}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lumenal.training.bench", description=__doc__.splitlines()[0])
    p.add_argument("--labels", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    doc = run(args.labels, progress=sys.stderr.isatty())
    print(table(doc))
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
