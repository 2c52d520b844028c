from pathlib import Path

import pytest

from chimera.cluster.deployments import deployment_options, engine_args_for_cluster, spec_version
from chimera.cluster.engines import serve_config
from chimera.config import ChimeraConfig, load_config
from chimera.errors import ConfigError
from chimera.models.specs import EngineSpec

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


def test_agent_answer_caps_are_per_expert_and_leave_half_the_window_to_the_prompt() -> None:
    config = load_config(CONFIGS / "local.yaml").model_dump(mode="json")
    config["agent"] |= {"answer_max_tokens": 384, "answer_max_tokens_by_expert": {"code": 1024}}
    agent = ChimeraConfig.model_validate(config).agent
    assert (agent.answer_tokens("chat"), agent.answer_tokens("code")) == (384, 1024)
    config["engines"]["smollm2"]["max_model_len"] = 1536  # half: 768, less than code's 1024
    with pytest.raises(
        ValueError, match="answer cap on expert 'code' \\(1024 tokens\\) exceeds half the max_model_len"
    ):
        ChimeraConfig.model_validate(config)
    config["agent"]["answer_max_tokens_by_expert"] = {"code": 0}
    with pytest.raises(ValueError, match="greater than 0"):
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


def _engine(**fields: object) -> EngineSpec:
    return EngineSpec.model_validate({"model": "/models/m", **fields})


def test_cluster_config_places_every_engine_by_node_label_and_autoscales_it() -> None:
    config = load_config(CONFIGS / "cluster.yaml")
    for spec in config.engines.values():
        options = deployment_options(spec)
        assert spec.label_selector["chimera/node-type"] in ("h100", "l4")
        assert "num_replicas" not in options and options["autoscaling_config"]["initial_replicas"] == 1
        if spec.tensor_parallel_size > 1:  # every bundle of the placement group on a node of the type
            assert options["placement_group_bundle_label_selector"] == [spec.label_selector] * spec.tensor_parallel_size
        else:
            assert options["ray_actor_options"]["label_selector"] == spec.label_selector
    assert ChimeraConfig.model_validate_json(config.model_dump_json()) == config  # what a worker actor is handed


def test_engine_placement_and_scaling_map_onto_serve_options() -> None:
    options = deployment_options(_engine(resources={"accelerator_L4": 1}, num_replicas=3,
                                         max_replicas_per_node=1))  # fmt: skip
    assert options["num_replicas"] == 3 and options["max_replicas_per_node"] == 1
    assert options["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 0.0, "resources": {"accelerator_L4": 1}}
    assert "autoscaling_config" not in options and options["logging_config"] == {"enable_access_log": False}
    scaled = deployment_options(_engine(autoscaling={"min_replicas": 2, "max_replicas": 5, "upscale_delay_s": 3}))
    assert scaled["autoscaling_config"] | {} == {
        "min_replicas": 2, "initial_replicas": 2, "max_replicas": 5, "target_ongoing_requests": 32.0,
        "upscale_delay_s": 3.0, "downscale_delay_s": 600.0, "look_back_period_s": 30.0,
    }  # fmt: skip
    tensor = deployment_options(_engine(tensor_parallel_size=2, gpus_per_worker=1, resources={"h100": 1}))
    assert tensor["placement_group_bundles"] == [{"CPU": 1.0, "GPU": 1.0, "h100": 1}, {"GPU": 1.0, "h100": 1}]


def test_engine_spec_digest_changes_with_the_spec_only() -> None:
    assert spec_version(_engine()) == spec_version(_engine())
    assert spec_version(_engine()) != spec_version(_engine(max_num_seqs=8))
    assert deployment_options(_engine())["user_config"] == {"spec_version": spec_version(_engine())}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"num_replicas": 2, "autoscaling": {"max_replicas": 4}}, "num_replicas or autoscaling"),
        ({"autoscaling": {"min_replicas": 3, "max_replicas": 2}}, "must not exceed"),
        ({"autoscaling": {"min_replicas": 0, "max_replicas": 2}}, "min_replicas"),
        ({"autoscaling": {"min_replicas": 1}}, "max_replicas"),
        ({"autoscaling": {"max_replicas": 2, "target_ongoing_requests": 0}}, "target_ongoing_requests"),
        ({"label_selector": {"chimera/node-type": 3}}, "label_selector"),
        ({"resources": {"h100": "lots"}}, "resources"),
        ({"max_replicas_per_node": 0}, "max_replicas_per_node"),
        ({"max_replicas_per_node": 1, "tensor_parallel_size": 2}, "does not apply to tensor-parallel"),
    ],
)
def test_bad_placement_and_scaling_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _engine(**fields)


def test_on_a_cluster_the_api_attaches_to_engines_deployed_once() -> None:
    local = load_config(CONFIGS / "local.yaml")
    cluster = load_config(CONFIGS / "cluster.yaml")
    assert local.ray.owns_engines and not cluster.ray.owns_engines
    pinned = cluster.ray.model_copy(update={"deploy_engines": True})
    assert pinned.owns_engines


def test_the_serve_config_builds_one_application_per_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    config = load_config(CONFIGS / "cluster.yaml")
    apps = serve_config(config)["applications"]
    assert [a["name"] for a in apps] == [f"chimera-engine-{name}" for name in config.engines]
    for app, spec in zip(apps, config.engines.values(), strict=True):
        assert app["import_path"] == "chimera.cluster.engines:engine_app_builder" and app["route_prefix"] is None
        assert EngineSpec.model_validate(app["args"]["spec"]) == spec  # the builder gets back the very spec


def test_deploy_prints_the_serve_config(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from chimera.cli import main

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert main(["--config", str(CONFIGS / "cluster.yaml"), "deploy", "--serve-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == serve_config(load_config(CONFIGS / "cluster.yaml"))
