from pathlib import Path

import pytest

from chimera.cluster.deployments import deployment_options, engine_args_for_cluster
from chimera.config import ChimeraConfig, load_config
from chimera.errors import ConfigError

CONFIGS = Path(__file__).parents[2] / "configs"


@pytest.mark.parametrize("name", ["local.yaml", "gpu-node.yaml", "cluster.yaml"])
def test_shipped_configs_validate(name: str) -> None:
    config = load_config(CONFIGS / name)
    assert set(config.experts) == {"code", "math", "text", "chat"}


def test_local_config_shares_one_cpu_engine_between_all_experts() -> None:
    config = load_config(CONFIGS / "local.yaml")
    assert {e.engine for e in config.experts.values()} == {"smollm2"}
    engine = config.engines["smollm2"]
    assert engine.dtype == "float32" and engine.num_gpus == 0 and engine.kv_cache_memory_bytes


def test_gpu_node_translates_to_serve_options_that_fill_eight_gpus() -> None:
    config = load_config(CONFIGS / "gpu-node.yaml")
    total_gpus = 0.0
    for spec in config.engines.values():
        options = deployment_options(spec)
        if spec.tensor_parallel_size > 1:
            bundles = options["placement_group_bundles"]
            assert len(bundles) == spec.tensor_parallel_size
            assert all(b["GPU"] == 1 for b in bundles)
            assert options["placement_group_strategy"] == "STRICT_PACK"
            assert engine_args_for_cluster(spec).engine_kwargs["distributed_executor_backend"] == "ray"
            total_gpus += sum(b["GPU"] for b in bundles) * options["num_replicas"]
        else:
            assert options["ray_actor_options"]["num_gpus"] == 1
            total_gpus += options["ray_actor_options"]["num_gpus"] * options["num_replicas"]
    assert total_gpus == 8


def test_cpu_engine_options_ask_for_no_gpu() -> None:
    spec = load_config(CONFIGS / "local.yaml").engines["smollm2"]
    options = deployment_options(spec)
    assert options["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 0.0}
    assert "placement_group_bundles" not in options


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_bad_yaml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "engines: [unclosed"))


def test_unknown_key_and_missing_expert_are_rejected(tmp_path: Path) -> None:
    base = (CONFIGS / "local.yaml").read_text()
    with pytest.raises(ConfigError, match="typo_field"):
        load_config(_write(tmp_path, base + "\ntypo_field: 1\n"))
    config = load_config(CONFIGS / "local.yaml").model_dump(mode="json")
    del config["experts"]["math"]
    with pytest.raises(ValueError, match="experts missing: math"):
        ChimeraConfig.model_validate(config)
    config = load_config(CONFIGS / "local.yaml").model_dump(mode="json")
    config["experts"]["math"]["engine"] = "ghost"
    with pytest.raises(ValueError, match="unknown engine 'ghost'"):
        ChimeraConfig.model_validate(config)


def test_config_is_frozen() -> None:
    config = load_config(CONFIGS / "local.yaml")
    with pytest.raises(ValueError):
        config.server.port = 1  # type: ignore[misc]


def test_env_overrides_connection_settings_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHIMERA_REDIS_URL", "redis://example:6379/1")
    monkeypatch.setenv("CHIMERA_RAY_ADDRESS", "auto")
    config = load_config(CONFIGS / "local.yaml")
    assert config.redis.url == "redis://example:6379/1"
    assert config.ray.address == "auto"


def test_every_config_field_is_documented() -> None:
    from pydantic import BaseModel

    def walk(model: type[BaseModel]) -> None:
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            annotation = field.annotation
            for candidate in (*getattr(annotation, "__args__", ()), annotation):
                if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                    walk(candidate)

    walk(ChimeraConfig)


def test_neo4j_without_a_uri_is_a_config_error(tmp_path: Path) -> None:
    from chimera.config import SearchConfig
    from chimera.tools.search.factory import open_graph_store

    with pytest.raises(ConfigError, match="no neo4j_uri"):
        open_graph_store(SearchConfig(graph_store="neo4j"), tmp_path)
