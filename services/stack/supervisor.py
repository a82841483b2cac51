"""``lumenal up`` / ``down`` / ``status``: the embedded stack as supervised processes.

``up`` starts SeaweedFS (S3), the tansu broker on S3 storage (topics and
offsets survive a restart), every Lumenal service that exists, and the UI;
waits for each to be ready; prints the ports; restarts a component that
crashes; and on Ctrl-C/SIGTERM stops everything in reverse order, leaving
nothing behind in /tmp. All state and logs live under ``LUMENAL_HOME``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lumenal.core import events, logs
from lumenal.core.config import CommonSettings, env, from_env, listen_port, lumenal_home
from lumenal.core.grpc_server import wait_healthy
from lumenal.core.objectstore import BROKER_BUCKET, BUCKETS, ObjectStore
from lumenal.stack import infra, state
from lumenal.stack.components import SERVICES, UI_PORT_VAR, Component, ui_app, ui_argv
from lumenal.stack.processes import ManagedProcess, free_port, port_open, wait_for

log = logging.getLogger("lumenal.stack")

MAX_RESTARTS = 5          # per component within RESTART_WINDOW_S, then it stays down
RESTART_WINDOW_S = 120.0
# tansu holds a fetch with no data for the full fetch_max_wait (Apache Kafka answers when data
# arrives): 100 ms instead of Kafka's 500 keeps each event hop under ~100 ms (measured: ~120 ms
# per hop at 500, ~25 ms at 100) for ~40 extra idle fetches a second across the services.
TANSU_FETCH_MAX_WAIT_MS = 100


@dataclass(frozen=True)
class StackSettings(CommonSettings):
    s3_port: int = env("LUMENAL_STACK_S3_PORT", 8333)
    kafka_port: int = env("LUMENAL_STACK_KAFKA_PORT", 9092)
    ui_port: int = env(UI_PORT_VAR, 8501)
    broker_storage: str = env("LUMENAL_STACK_BROKER_STORAGE", "s3")  # s3 (durable) | memory
    start_timeout_s: float = env("LUMENAL_STACK_START_TIMEOUT_S", 180.0)


@dataclass
class Running:
    """A started component and how to check it."""

    proc: ManagedProcess
    kind: str               # infra | service | ui
    port: int
    health: str             # "tcp:PORT" | "grpc:HOST:PORT" | "http:URL"
    crashes: list[float] = dataclasses.field(default_factory=list)
    given_up: bool = False


class Stack:
    """Starts, supervises and stops the components of one ``LUMENAL_HOME``."""

    def __init__(self, home: Path, settings: StackSettings, free_ports: bool = False,
                 with_ui: bool = True, only: list[str] | None = None) -> None:
        self.home, self.settings, self.with_ui = home, settings, with_ui
        self.services = [c for c in SERVICES if c.available() and (not only or c.name in only)]
        self.running: dict[str, Running] = {}
        self.extra_env: dict[str, str] = {}
        pick = free_port if free_ports else None
        self.s3 = infra.S3Config(pick() if pick else settings.s3_port, settings.s3_access_key,
                                 settings.s3_secret_key)
        self.kafka_port = pick() if pick else settings.kafka_port
        self.ui_port = pick() if pick else settings.ui_port
        self.ports = {c.name: (pick() if pick else listen_port(getattr(settings, f"{c.name}_addr")),
                               pick() if pick else c.default_metrics_port) for c in self.services}

    # -- configuration handed to every child -------------------------------
    def auth_secret(self) -> str:
        """The local stack's signing secret, created once and kept in the home (0600)."""
        return self._home_secret("auth_secret")

    def admin_password(self) -> str:
        """The bootstrap admin's password, generated on first start and kept in the home (0600)."""
        return self._home_secret("admin_password")

    def _home_secret(self, name: str) -> str:
        path = self.home / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(16 if name == "admin_password" else 32))
        return path.read_text().strip()

    def client_env(self) -> dict[str, str]:
        """What a client (CLI, UI, service) needs to reach this stack."""
        out = {
            "LUMENAL_HOME": str(self.home),
            "LUMENAL_KAFKA_BOOTSTRAP": f"127.0.0.1:{self.kafka_port}",
            "LUMENAL_S3_ENDPOINT": self.s3.endpoint,
            "LUMENAL_S3_ACCESS_KEY": self.s3.access_key,
            "LUMENAL_S3_SECRET_KEY": self.s3.secret_key,
            "LUMENAL_AUTH_SECRET": self.auth_secret(),
            "LUMENAL_MODEL_BASE_PATH": str(self.home / "models"),
        }
        for c in SERVICES:
            port = self.ports[c.name][0] if c.name in self.ports else c.default_port
            out[c.addr_var] = f"127.0.0.1:{port}"
        return out

    def child_env(self, component: Component | None = None) -> dict[str, str]:
        out = {**self.client_env(), "PYTHONUNBUFFERED": "1",
               "KERAS_HOME": os.environ.get("KERAS_HOME", str(self.home / "keras")),
               "TF_CPP_MIN_LOG_LEVEL": "2", "LUMENAL_LABELS_ADMIN_PASSWORD": self.admin_password(),
               "LUMENAL_KAFKA_FETCH_MAX_WAIT_MS": str(TANSU_FETCH_MAX_WAIT_MS), **self.extra_env}
        if component is not None and component.metrics_var:
            out[component.metrics_var] = str(self.ports[component.name][1])
        return out

    # -- start -------------------------------------------------------------
    def start(self) -> None:
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        (self.home / "models").mkdir(parents=True, exist_ok=True)
        self._write_state(ready=False)
        self._start_s3()
        self._start_kafka()
        # Start every service, then wait for each: their start-up (mostly
        # importing TensorFlow) overlaps instead of adding up.
        for comp in self.services:
            self._start_service(comp)
        if self.with_ui and ui_app().exists():
            self._start_ui()
        for name, run in self.running.items():
            if run.kind != "infra":
                self._wait_healthy(name)
        self._write_state(ready=True)

    def _add(self, name: str, run: Running) -> None:
        self.running[name] = run
        self._write_state(ready=False)

    def _start_s3(self) -> None:
        proc = infra.seaweed(self.home / "s3", self.home / "logs", self.s3)
        self._add("s3", Running(proc.start(), "infra", self.s3.port, f"tcp:{self.s3.port}"))
        store = ObjectStore.from_settings(from_env(CommonSettings, environ=self.client_env()))
        wait_for(store.healthy, self.settings.start_timeout_s, "s3 (seaweedfs)", proc)
        for bucket in (*BUCKETS, BROKER_BUCKET):
            store.ensure_bucket(bucket)

    def _start_kafka(self) -> None:
        storage = f"s3://{BROKER_BUCKET}/" if self.settings.broker_storage == "s3" else "memory://tansu/"
        proc = infra.tansu(self.kafka_port, self.home / "logs", storage, self.s3)
        self._add("kafka", Running(proc.start(), "infra", self.kafka_port, f"tcp:{self.kafka_port}"))
        proc.wait_ready(self.settings.start_timeout_s)
        events.ensure_topics(f"127.0.0.1:{self.kafka_port}", timeout_s=self.settings.start_timeout_s)

    def _start_service(self, comp: Component) -> None:
        port = self.ports[comp.name][0]
        proc = ManagedProcess(comp.name, [sys.executable, "-m", comp.module],
                              self.home / "logs" / f"{comp.name}.log", env=self.child_env(comp))
        self._add(comp.name, Running(proc.start(), "service", port, f"grpc:127.0.0.1:{port}"))

    def _start_ui(self) -> None:
        proc = ManagedProcess("ui", ui_argv(sys.executable, self.ui_port), self.home / "logs" / "ui.log",
                              env=self.child_env())
        url = f"http://127.0.0.1:{self.ui_port}/_stcore/health"
        self._add("ui", Running(proc.start(), "ui", self.ui_port, f"http:{url}"))

    def _wait_healthy(self, name: str) -> None:
        run = self.running[name]
        wait_for(lambda: check_health(run.health), self.settings.start_timeout_s, name, run.proc)

    # -- supervise and stop -------------------------------------------------
    def supervise_once(self) -> None:
        """Restart components that died, with a crash budget per component."""
        for name, run in self.running.items():
            if run.proc.alive() or run.given_up:
                continue
            now = time.monotonic()
            run.crashes = [t for t in run.crashes if now - t < RESTART_WINDOW_S] + [now]
            if len(run.crashes) > MAX_RESTARTS:
                run.given_up = True
                log.error("component keeps crashing; leaving it down",
                          extra={"component": name, "log": str(run.proc.log_path)})
                continue
            log.warning("component exited; restarting",
                        extra={"component": name, "code": run.proc.returncode()})
            run.proc.restarts += 1
            run.proc.start()
        self._write_state(ready=True)

    def stop(self) -> None:
        """Services and UI together (each drains in-flight work), then the broker, then S3."""
        apps = [n for n, r in self.running.items() if r.kind != "infra"]
        for name in apps:
            self.running[name].proc.terminate()
        for name in [*apps, *reversed([n for n in self.running if n not in apps])]:
            run = self.running[name]
            run.proc.stop(timeout_s=20)
            log.info("stopped", extra={"component": name})
        self._remove_stale_sockets()
        state.remove(self.home)

    def _remove_stale_sockets(self) -> None:
        """SeaweedFS removes its /tmp sockets on a clean stop; a killed one may not.

        Only this stack's own: other SeaweedFS instances on the machine keep theirs.
        """
        run = self.running.get("s3")
        if run is None or run.proc.alive():
            return
        for sock in infra.leftover_weed_sockets(run.proc):
            with contextlib.suppress(OSError):
                Path(sock).unlink()

    def _write_state(self, ready: bool) -> None:
        state.write({
            "pid": os.getpid(), "ready": ready, "home": str(self.home), "env": self.client_env(),
            "components": {n: {"pid": r.proc.pid, "kind": r.kind, "port": r.port, "health": r.health,
                               "log": str(r.proc.log_path), "restarts": r.proc.restarts,
                               "given_up": r.given_up}
                           for n, r in self.running.items()},
        }, self.home)


def check_health(spec: str, timeout_s: float = 2.0) -> bool:
    """One health probe: ``tcp:PORT``, ``grpc:HOST:PORT`` or ``http:URL``."""
    kind, _, target = spec.partition(":")
    try:
        if kind == "tcp":
            return port_open(int(target))
        if kind == "grpc":
            wait_healthy(target, timeout_s)
            return True
        if kind == "http":
            with urllib.request.urlopen(target, timeout=timeout_s) as resp:
                return resp.status == 200
    except (OSError, TimeoutError):
        return False
    return False


# -- commands ---------------------------------------------------------------

def _home(arg: str | None) -> Path:
    home = Path(arg).expanduser().resolve() if arg else lumenal_home()
    os.environ["LUMENAL_HOME"] = str(home)
    return home


def _print_table(st: dict) -> None:
    print(f"Lumenal stack (home {st['home']}, supervisor pid {st['pid']})")
    print(f"  {'component':<12} {'pid':>7}  {'port':>6}  {'health':<9} log")
    for name, c in st["components"].items():
        ok = state.pid_alive(c["pid"]) and check_health(c["health"], 1.0)
        health = "down" if c.get("given_up") else ("ok" if ok else "starting" if not st["ready"] else "FAILING")
        print(f"  {name:<12} {c['pid'] or '-':>7}  {c['port']:>6}  {health:<9} {c['log']}")
    if "ui" in st["components"]:
        print(f"\n  UI: http://127.0.0.1:{st['components']['ui']['port']}"
              f"  (admin password in {Path(st['home']) / 'admin_password'})")


def main_up(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="lumenal up", description="Start the embedded stack.")
    p.add_argument("--home", help="state folder (default $LUMENAL_HOME or ~/.lumenal)")
    p.add_argument("--free-ports", action="store_true", help="pick free ports instead of the defaults")
    p.add_argument("--no-ui", action="store_true", help="do not start the Streamlit UI")
    p.add_argument("--only", nargs="*", help="start only these services")
    p.add_argument("--demo", action="store_true", help="load the SYNTHETIC demo video and demo accounts")
    p.add_argument("--detach", action="store_true", help="run in the background; return once ready")
    args = p.parse_args(argv)
    home = _home(args.home)
    settings = from_env(StackSettings)
    logs.setup("stack", settings.log_level)
    if (running := state.read(home)) is not None:
        print(f"a stack is already running from {home} (pid {running['pid']}): see `lumenal status`",
              file=sys.stderr)
        return 1
    if args.detach:
        return _detach(home, [a for a in argv if a != "--detach"], settings.start_timeout_s)
    stack = Stack(home, settings, args.free_ports, not args.no_ui, args.only)
    if args.demo:
        from lumenal.stack.demo import demo_env
        stack.extra_env.update(demo_env())

    def on_signal(signum: int, _frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        stack.start()
        _print_table(state.read(home) or {})
        if args.demo:
            from lumenal.stack.demo import load_demo
            load_demo(home, stack.child_env())
        print("\nRunning. Ctrl-C (or `lumenal down`) stops everything.", flush=True)
        while True:
            time.sleep(1.0)
            stack.supervise_once()
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
        return 0
    except (TimeoutError, RuntimeError, OSError) as exc:
        print(f"lumenal up failed: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
        print("stopped.", flush=True)


def _detach(home: Path, argv: list[str], timeout_s: float) -> int:
    """Re-run ``up`` in its own session, logging to the home; wait until ready."""
    log_path = home / "logs" / "supervisor.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "lumenal.cli", "up", *argv], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s * 3
    while time.monotonic() < deadline:
        st = state.read(home)
        if st and st.get("ready") and st["pid"] == proc.pid:
            _print_table(st)
            return 0
        if proc.poll() is not None:
            print(f"lumenal up exited with {proc.returncode}; see {log_path}", file=sys.stderr)
            return 1
        time.sleep(0.5)
    print(f"lumenal up not ready after {timeout_s * 3:.0f}s; see {log_path}", file=sys.stderr)
    return 1


def main_status(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="lumenal status", description="Show the embedded stack.")
    p.add_argument("--home")
    args = p.parse_args(argv)
    st = state.read(_home(args.home))
    if st is None:
        print("no Lumenal stack is running (start one with `lumenal up`)")
        return 3
    _print_table(st)
    healthy = all(state.pid_alive(c["pid"]) and check_health(c["health"], 1.0)
                  for c in st["components"].values())
    return 0 if healthy and st["ready"] else 1


def main_down(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="lumenal down", description="Stop the embedded stack.")
    p.add_argument("--home")
    p.add_argument("--timeout", type=float, default=90.0)
    args = p.parse_args(argv)
    home = _home(args.home)
    st = state.read(home)
    if st is None:
        print("no Lumenal stack is running")
        return 0
    os.kill(st["pid"], signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and state.pid_alive(st["pid"]):
        time.sleep(0.3)
    if state.pid_alive(st["pid"]):
        print("supervisor did not stop in time; killing its components", file=sys.stderr)
        for c in st["components"].values():
            with contextlib.suppress(ProcessLookupError, TypeError):
                os.killpg(c["pid"], signal.SIGKILL)
        os.kill(st["pid"], signal.SIGKILL)
        state.remove(home)
        return 1
    print("stopped.")
    return 0
