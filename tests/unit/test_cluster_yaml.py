"""cluster.yaml passes Ray's own autoscaler schema and keeps the security defaults."""
from __future__ import annotations

import copy

import yaml
from ray.autoscaler._private.util import fillout_defaults, validate_config

from tests.conftest import PROJECT_ROOT


def load() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_validates_against_rays_schema():
    config = fillout_defaults(copy.deepcopy(load()))
    validate_config(config)  # raises jsonschema.ValidationError on any unknown or mistyped key
    assert config["provider"]["type"] == "local"


def test_every_ray_start_uses_token_auth_and_a_loopback_dashboard():
    config = load()
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    for command in (c for c in starts if "ray start" in c):
        assert "RAY_AUTH_MODE=token" in command
    head = next(c for c in config["head_start_ray_commands"] if "ray start" in c)
    assert "--dashboard-host=127.0.0.1" in head
    assert "~/.ray/auth_token" in config["file_mounts"]


def test_the_ray_head_script_binds_loopback_with_token_auth():
    script = (PROJECT_ROOT / "scripts" / "ray-head.sh").read_text()
    assert "export RAY_AUTH_MODE=token" in script
    assert "--node-ip-address=127.0.0.1" in script and "--dashboard-host=127.0.0.1" in script


def test_the_schema_check_would_catch_a_mistake():
    import jsonschema
    import pytest

    broken = load() | {"head_start_commands": ["ray start --head"]}  # a misspelled key
    with pytest.raises(jsonschema.ValidationError):
        validate_config(fillout_defaults(broken))
