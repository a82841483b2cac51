"""Version policies and ModelServerConfig parsing (no models loaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorflow_serving.config import model_server_config_pb2

from lumenal.core import errors
from lumenal.core.config import from_env
from lumenal.modelserver.manager import ModelConfig
from lumenal.modelserver.server import configs_from_proto, manager_from_settings
from lumenal.modelserver.settings import ModelServerSettings


def test_policies_choose_versions() -> None:
    found = {1, 2, 5, 9}
    assert ModelConfig("m", Path("x")).choose(found) == {9}
    assert ModelConfig("m", Path("x"), latest_n=2).choose(found) == {5, 9}
    assert ModelConfig("m", Path("x"), latest_n=10).choose(found) == found
    assert ModelConfig("m", Path("x"), "specific", specific=frozenset({2, 3})).choose(found) == {2}
    assert ModelConfig("m", Path("x"), "all").choose(found) == found
    assert ModelConfig("m", Path("x")).choose(set()) == set()


def _proto(text: str) -> model_server_config_pb2.ModelServerConfig:
    from google.protobuf import text_format
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def test_model_config_list_parses_policies_and_labels() -> None:
    cfgs = configs_from_proto(_proto("""
        model_config_list {
          config { name: "a" base_path: "/m/a" model_platform: "tensorflow" }
          config { name: "b" base_path: "file:///m/b"
                   model_version_policy { latest { num_versions: 3 } } }
          config { name: "c" base_path: "/m/c"
                   model_version_policy { specific { versions: 4 versions: 7 } }
                   version_labels { key: "stable" value: 4 } version_labels { key: "canary" value: 7 } }
          config { name: "d" base_path: "/m/d" model_version_policy { all {} } }
        }"""), default_latest=2)
    a, b, c, d = cfgs
    assert (a.policy, a.latest_n, a.base_path) == ("latest", 2, Path("/m/a"))
    assert (b.policy, b.latest_n, b.base_path) == ("latest", 3, Path("/m/b"))
    assert (c.policy, c.specific, dict(c.labels)) == ("specific", frozenset({4, 7}), {"stable": 4, "canary": 7})
    assert d.policy == "all"


@pytest.mark.parametrize("text", [
    'model_config_list { config { base_path: "/m/a" } }',
    'model_config_list { config { name: "a" } }',
    'model_config_list { config { name: "a" base_path: "/m" model_platform: "pytorch" } }',
    'model_config_list { config { name: "a" base_path: "/m" model_version_policy { specific {} } } }',
    "custom_model_config { }",
])
def test_bad_configs_are_invalid_argument(text: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        configs_from_proto(_proto(text), 1)


def test_config_file_setting_selects_explicit_models(tmp_path: Path) -> None:
    path = tmp_path / "models.config"
    path.write_text('model_config_list { config { name: "x" base_path: "%s" } }' % (tmp_path / "x"))
    manager = manager_from_settings(from_env(ModelServerSettings, environ={},
                                             model_config_file=str(path)))
    assert list(manager.configs()) == ["x"]


def test_discovery_serves_every_model_folder(tmp_path: Path) -> None:
    (tmp_path / "frame_triage").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / ".tmp-1").mkdir()
    settings = from_env(ModelServerSettings, environ={"LUMENAL_MODEL_BASE_PATH": str(tmp_path),
                                                      "LUMENAL_MODELSERVER_LATEST_N": "2"})
    configs = manager_from_settings(settings).configs()
    assert sorted(configs) == ["frame_triage", "other"]
    assert configs["other"].latest_n == 2 and configs["other"].base_path == tmp_path / "other"


def test_settings_defaults() -> None:
    s = from_env(ModelServerSettings, environ={})
    assert s.metrics_port == 9105 and s.latest_versions == 1
    assert s.base_path.name == "models"
