"""The ``lumenal`` command: a thin dispatcher to each area's own CLI.

Each command lives next to the code it drives and is imported only when
called, so ``lumenal status`` never pays for importing TensorFlow.
"""

from __future__ import annotations

import importlib
import os
import sys

# command -> (module, function taking argv and returning an exit code), help
COMMANDS: dict[str, tuple[str, str, str]] = {
    "up": ("lumenal.stack.supervisor", "main_up", "start the embedded stack (--demo loads the synthetic demo)"),
    "down": ("lumenal.stack.supervisor", "main_down", "stop a running embedded stack"),
    "status": ("lumenal.stack.supervisor", "main_status", "show the embedded stack's processes and health"),
    "serve": ("lumenal.stack.serve", "main", "run one service in the foreground (container entrypoint)"),
    "ingest": ("lumenal.storage.cli", "main", "ingest a video, image folder or Kvasir-Capsule tree"),
    "demo-video": ("lumenal.demo.synthetic", "main", "write the SYNTHETIC capsule-like demo video and ground truth"),
    "demo": ("lumenal.demo.loop", "main", "run the active-learning loop (--simulate-oracle)"),
    "bench": ("lumenal.bench.cli", "main", "benchmarks: 'bench al' and 'bench system'"),
    "users": ("lumenal.labels.cli", "main", "manage annotators in the labels database"),
}

# These manage the stack themselves and must not inherit a running one's settings.
STACK_COMMANDS = {"up", "down", "status", "serve"}


def usage() -> str:
    lines = ["usage: lumenal COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<11} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "Run 'lumenal COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"lumenal: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[name]
    if name not in STACK_COMMANDS:
        _use_local_stack()
    return int(getattr(importlib.import_module(module), func)(rest) or 0)


def _use_local_stack() -> None:
    """Connect to a running local stack unless the environment says otherwise."""
    from lumenal.stack.state import client_env

    for key, value in client_env().items():
        os.environ.setdefault(key, value)


if __name__ == "__main__":
    sys.exit(main())
