"""`LLMEngine` over vLLM's `AsyncLLM` (v1 engine): continuous batching, streaming deltas, guided JSON."""

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from chimera.models.engine.base import (
    EngineHealth,
    EngineUnavailableError,
    FinishReason,
    GenerationDelta,
    GenerationRequest,
    LLMEngine,
    PromptTooLongError,
    UnsupportedSchemaError,
)
from chimera.models.specs import EngineSpec

if TYPE_CHECKING:
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

log = logging.getLogger(__name__)

_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length", "abort": "abort"}


def engine_args(spec: EngineSpec) -> "AsyncEngineArgs":
    """vLLM's engine arguments for a spec (also what `bench/serving.py` starts its raw baseline with)."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    return AsyncEngineArgs(
        model=spec.model,
        served_model_name=[spec.served_name or spec.model],
        dtype=spec.dtype,
        max_model_len=spec.max_model_len,
        tensor_parallel_size=spec.tensor_parallel_size,
        kv_cache_memory_bytes=spec.kv_cache_memory_bytes,
        gpu_memory_utilization=spec.gpu_memory_utilization,
        enforce_eager=spec.enforce_eager,
        max_num_seqs=spec.max_num_seqs,
        disable_log_stats=True,
        **spec.engine_kwargs,
    )


class VLLMEngine(LLMEngine):
    """One vLLM engine for one model; `spec.model` must be a local folder (see `models.provision`)."""

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self._engine: AsyncLLM | None = None
        self._tokenizer: Any = None

    @property
    def model_name(self) -> str:
        return self.spec.served_name or self.spec.model

    async def start(self) -> None:
        from vllm.v1.engine.async_llm import AsyncLLM

        self._engine = AsyncLLM.from_engine_args(engine_args(self.spec))
        self._tokenizer = self._engine.tokenizer
        log.info("vLLM engine for %s started", self.model_name)

    def _render(self, request: GenerationRequest) -> list[int]:
        """Apply the model's chat template and tokenize; the template adds the special tokens."""
        messages = [m.model_dump() for m in request.messages]
        text = self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def _sampling(self, request: GenerationRequest, prompt_len: int) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        room = self.spec.max_model_len - prompt_len
        return SamplingParams(
            max_tokens=min(request.max_tokens, room),
            temperature=request.temperature,
            top_p=request.top_p,
            stop=list(request.stop) or None,
            seed=request.seed,
            ignore_eos=request.ignore_eos,
            presence_penalty=request.presence_penalty,
            frequency_penalty=request.frequency_penalty,
            output_kind=RequestOutputKind.DELTA,
            structured_outputs=(
                StructuredOutputsParams(json=request.json_schema) if request.json_schema is not None else None
            ),
        )

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        from vllm.v1.engine.exceptions import EngineDeadError

        engine = self._require_engine()
        prompt_ids = self._render(request)
        if len(prompt_ids) >= self.spec.max_model_len:
            raise PromptTooLongError(
                f"prompt has {len(prompt_ids)} tokens; {self.model_name} accepts at most "
                f"{self.spec.max_model_len - 1} plus at least one generated token"
            )
        params = self._sampling(request, len(prompt_ids))
        finished = False
        completion_tokens = 0
        try:
            stream = engine.generate({"prompt_token_ids": prompt_ids}, params, request.request_id)
            async for out in stream:
                choice = out.outputs[0]
                completion_tokens += len(choice.token_ids)
                finish = _FINISH.get(choice.finish_reason or "", "abort") if out.finished else None
                finished = out.finished
                yield GenerationDelta(
                    text=choice.text,
                    finish_reason=finish,
                    prompt_tokens=len(prompt_ids),
                    completion_tokens=completion_tokens,
                )
        except EngineDeadError as e:
            raise EngineUnavailableError(f"engine for {self.model_name} died: {e}") from e
        except _request_errors() as e:
            if request.json_schema is None:
                raise
            raise UnsupportedSchemaError(f"{self.model_name} cannot guide decoding by this JSON schema: {e}") from e
        finally:
            if not finished:  # the consumer went away (client disconnect, cancel): free the sequence now
                await engine.abort(request.request_id)

    async def abort(self, request_id: str) -> None:
        await self._require_engine().abort(request_id)

    async def health(self) -> EngineHealth:
        engine = self._engine
        if engine is None:
            return EngineHealth(model=self.model_name, healthy=False, running=0)
        return EngineHealth(
            model=self.model_name,
            healthy=not engine.errored,
            running=engine.output_processor.get_num_unfinished_requests(),
        )

    async def shutdown(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None

    def _require_engine(self) -> "AsyncLLM":
        if self._engine is None:
            raise EngineUnavailableError(f"engine for {self.model_name} is not started")
        return self._engine


def _request_errors() -> tuple[type[Exception], ...]:
    """What vLLM raises for a request it refuses (its grammar backends' schema checks among them): `ValueError`
    in older releases, `VLLMClientError` in newer ones."""
    try:
        from vllm.exceptions import VLLMClientError
    except ImportError:
        return (ValueError,)
    return (ValueError, VLLMClientError)
