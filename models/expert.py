"""An expert as its callers see it: a role (system prompt, sampling) bound to an engine client, traced."""

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.context import Context

from chimera.cluster.tracing import traced_generation, traceparent_of
from chimera.messages import ChatMessage
from chimera.models.engine.base import GenerationDelta, GenerationRequest
from chimera.models.specs import ExpertName, ExpertSpec

_tracer = trace.get_tracer("chimera.models")


class EngineClient(Protocol):
    """Anything that streams a `GenerationRequest`: an `LLMEngine` in process, or a Serve handle to one."""

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]: ...


@dataclass(frozen=True)
class SamplingOverrides:
    """What a request may change of the expert's sampling defaults (None keeps the default)."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    ignore_eos: bool = False
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


def compose_prompt(system_prompt: str, messages: list[ChatMessage]) -> list[ChatMessage]:
    """Prepend the expert's system prompt, merging any system messages the caller sent into it.

    Many chat templates accept one system message, first; so all of them become one.
    """
    extra = [m.content for m in messages if m.role == "system" and m.content.strip()]
    system = "\n\n".join([system_prompt, *extra])
    return [ChatMessage(role="system", content=system), *(m for m in messages if m.role != "system")]


class Expert:
    """One of code/math/text/chat: generation with this expert's prompt and defaults, in a `gen_ai` span."""

    def __init__(self, name: ExpertName, spec: ExpertSpec, client: EngineClient, model_name: str) -> None:
        self.name = name
        self.spec = spec
        self.client = client
        self.model_name = model_name

    async def stream(
        self,
        messages: list[ChatMessage],
        sampling: SamplingOverrides | None = None,
        *,
        json_schema: dict[str, Any] | None = None,
        parent: Context | None = None,
    ) -> AsyncIterator[GenerationDelta]:
        """Stream a completion of `messages`; the last delta has the usage.

        Its span hangs under `parent`, or under the current span when `parent` is None.
        """
        sampling = sampling or SamplingOverrides()
        defaults = self.spec.sampling
        # A plain span, not a current one: this generator yields to its consumer while the span is open, and
        # attaching a context across yields would parent the consumer's own spans to this one.
        span = _tracer.start_span(
            "expert.generate",
            context=parent,
            kind=trace.SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.system": "vllm",
                "gen_ai.request.model": self.model_name,
                "chimera.expert": self.name,
                "chimera.guided_json": json_schema is not None,
            },
        )
        request = GenerationRequest(
            request_id=f"chimera-{uuid.uuid4().hex}",
            messages=compose_prompt(self.spec.system_prompt, messages),
            max_tokens=sampling.max_tokens or defaults.max_tokens,
            temperature=defaults.temperature if sampling.temperature is None else sampling.temperature,
            top_p=sampling.top_p or defaults.top_p,
            stop=sampling.stop,
            seed=sampling.seed,
            ignore_eos=sampling.ignore_eos,
            presence_penalty=sampling.presence_penalty or 0.0,
            frequency_penalty=sampling.frequency_penalty or 0.0,
            json_schema=json_schema,
            traceparent=traceparent_of(span),
        )
        span.set_attribute("gen_ai.request.max_tokens", request.max_tokens)
        async for delta in traced_generation(span, self.client.generate(request)):
            yield delta

    async def complete(
        self,
        messages: list[ChatMessage],
        sampling: SamplingOverrides | None = None,
        *,
        json_schema: dict[str, Any] | None = None,
        parent: Context | None = None,
    ) -> "Completion":
        """The whole completion: its text, how it ended and its usage."""
        done = Completion()
        async for delta in self.stream(messages, sampling, json_schema=json_schema, parent=parent):
            done.take(delta)
        return done


@dataclass
class Completion:
    """A completion as its deltas arrive: the text so far, and the usage and finish reason of the newest delta."""

    text: str = ""
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def take(self, delta: GenerationDelta) -> str:
        """Add a delta; returns its text."""
        self.text += delta.text
        self.finish_reason = delta.finish_reason or self.finish_reason
        self.prompt_tokens, self.completion_tokens = delta.prompt_tokens, delta.completion_tokens
        return delta.text
