"""Fixtures that start real infrastructure on free ports and clean up.

Session-scoped where start-up is costly (SeaweedFS, tansu); every test that
needs isolation gets its own bucket prefix, topic or database.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_HOME", str(Path(__file__).parent.parent / ".keras"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from lumenal.core.config import CommonSettings, from_env  # noqa: E402
from lumenal.core.objectstore import BUCKETS, ObjectStore  # noqa: E402
from lumenal.stack import infra  # noqa: E402
from lumenal.stack.processes import free_port  # noqa: E402

PG_URL = os.environ.get("LUMENAL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@dataclass
class Infra:
    """Endpoints of the running stand-ins, as service settings see them."""

    s3: infra.S3Config
    kafka_bootstrap: str | None = None

    def settings(self, **overrides: object) -> CommonSettings:
        base = {"s3_endpoint": self.s3.endpoint, "s3_access_key": self.s3.access_key,
                "s3_secret_key": self.s3.secret_key}
        if self.kafka_bootstrap:
            base["kafka_bootstrap"] = self.kafka_bootstrap
        return from_env(CommonSettings, environ={}, **{**base, **overrides})

    def env(self) -> dict[str, str]:
        """Environment for service processes started by tests."""
        out = {"LUMENAL_S3_ENDPOINT": self.s3.endpoint, "LUMENAL_S3_ACCESS_KEY": self.s3.access_key,
               "LUMENAL_S3_SECRET_KEY": self.s3.secret_key, "LUMENAL_AUTH_SECRET": "test-secret"}
        if self.kafka_bootstrap:
            out["LUMENAL_KAFKA_BOOTSTRAP"] = self.kafka_bootstrap
        return out


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[infra.S3Config]:
    """A real SeaweedFS S3 endpoint with credentials, stopped cleanly at the end."""
    root = tmp_path_factory.mktemp("weed")
    cfg = infra.S3Config(free_port(), "test-access", "test-secret-" + secrets.token_hex(4))
    proc = infra.seaweed(root / "data", root / "logs", cfg).start().wait_ready(60)
    store = ObjectStore.from_settings(Infra(cfg).settings())
    from lumenal.stack.processes import wait_for
    wait_for(store.healthy, 60, "seaweedfs s3", proc)
    for b in BUCKETS:
        store.ensure_bucket(b)
    yield cfg
    proc.stop()


@pytest.fixture(scope="session")
def kafka_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real tansu broker (memory:// storage) on a free port; yields bootstrap."""
    port = free_port()
    proc = infra.tansu(port, tmp_path_factory.mktemp("tansu"), "memory://tansu/").start().wait_ready(30)
    yield f"127.0.0.1:{port}"
    proc.stop()


@pytest.fixture(scope="session")
def stack_infra(s3_server: infra.S3Config, kafka_server: str) -> Infra:
    return Infra(s3_server, kafka_server)


def _own_broker(s3: infra.S3Config, tmp: Path) -> Iterator[Infra]:
    port = free_port()
    proc = infra.tansu(port, tmp, "memory://tansu/").start().wait_ready(30)
    yield Infra(s3, f"127.0.0.1:{port}")
    proc.stop()


@pytest.fixture
def isolated_infra(s3_server: infra.S3Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    """Shared S3 but a broker of the test's own, for services that replay topics from the start
    (on the session broker they would also see every earlier test's events)."""
    yield from _own_broker(s3_server, tmp_path_factory.mktemp("tansu"))


@pytest.fixture(scope="module")
def module_infra(s3_server: infra.S3Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    """Like ``isolated_infra``, one broker per test module."""
    yield from _own_broker(s3_server, tmp_path_factory.mktemp("tansu"))


@pytest.fixture
def object_store(s3_server: infra.S3Config) -> ObjectStore:
    return ObjectStore.from_settings(Infra(s3_server).settings())


@pytest.fixture
def unique() -> str:
    """A short unique id for topics, groups, prefixes."""
    return uuid.uuid4().hex[:10]


def _pg_available() -> bool:
    if shutil.which("pg_isready") is None:
        return False
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432"], capture_output=True).returncode == 0


@pytest.fixture
def pg_url(unique: str) -> Iterator[str]:
    """A fresh PostgreSQL database (CI starts the server in .ci/run)."""
    if not _pg_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not running on 127.0.0.1:5432 (.ci/run should start it)")
        pytest.skip("PostgreSQL not running on 127.0.0.1:5432")
    import sqlalchemy as sa

    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"lumenal_{unique}"
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
