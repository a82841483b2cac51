"""``lumenal serve NAME``: run one component in the foreground (the container entrypoint)."""

from __future__ import annotations

import argparse
import os
import runpy
import sys

from lumenal.stack.components import BY_NAME, UI_DEFAULT_PORT, UI_PORT_VAR, ui_argv

EXTRA = {"model-sync": "lumenal.training.sync"}


def main(argv: list[str]) -> int:
    names = [*BY_NAME, *EXTRA, "ui"]
    parser = argparse.ArgumentParser(prog="lumenal serve", description=__doc__)
    parser.add_argument("name", choices=names)
    args = parser.parse_args(argv)
    if args.name == "ui":
        port = int(os.environ.get(UI_PORT_VAR, UI_DEFAULT_PORT))
        host = os.environ.get("LUMENAL_BIND_HOST", "127.0.0.1")
        cmd = ui_argv(sys.executable, port, host)
        os.execv(cmd[0], cmd)
    module = BY_NAME[args.name].module if args.name in BY_NAME else EXTRA[args.name]
    sys.argv = [module]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0
