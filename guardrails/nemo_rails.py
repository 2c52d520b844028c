"""`NemoRails`: Chimera's rails run by NeMo Guardrails (`LLMRails.check_async`), with no main LLM.

Input and output rails go through NeMo's Colang flows (`config/rails.co`); the flows call Chimera's offline actions
(`checks`), which run on one dedicated thread with one torch thread (two intra-op threads on a 2-core machine
that is also serving a model spin against each other: 5 ms became 200 ms in measurement). Scores and rail names
reach the caller through a context variable, since `check_async` returns only the flow name.

Retrieval and tool-input checks call the same actions directly: `check_async` covers only input and output rails,
and NeMo's tool rails vet tool results, not the code an agent sends.
"""

import asyncio
import contextvars
import logging
import os
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from chimera.guardrails.base import OutputStream, RailResult, Rails
from chimera.guardrails.checks import InputChecker, RetrievalChecker, Verdict
from chimera.guardrails.pii import PiiMasker
from chimera.guardrails.streaming import StreamMasker
from chimera.guardrails.tool_input import ToolInputScanner
from chimera.messages import ChatMessage

if TYPE_CHECKING:
    from nemoguardrails import LLMRails

log = logging.getLogger(__name__)

_VERDICTS: contextvars.ContextVar[list[Verdict]] = contextvars.ContextVar("chimera_rail_verdicts")


def _one_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)  # per OS thread under OpenMP: the rest of the process keeps its threads


class NemoRails(Rails):
    """Rails through a built `LLMRails` (see `factory.build_rails`).

    Args:
        rails: NeMo's rails, built from `config/` without a main model.
        checker, retrieval, masker, scanner: the offline checks behind the actions.
        max_user_turns: newest user turns checked per request (older ones were checked when they were new).
        cache_size: verdicts remembered by text, so a conversation's earlier turns are not re-checked (0: none).
        stream_window: cap on the characters a streamed answer holds back while they could still be part of PII.
    """

    def __init__(
        self,
        rails: "LLMRails",
        checker: InputChecker,
        retrieval: RetrievalChecker,
        masker: PiiMasker,
        scanner: ToolInputScanner,
        *,
        max_user_turns: int = 8,
        cache_size: int = 4096,
        stream_window: int = 128,
    ) -> None:
        self.rails = rails
        self.checker, self.retrieval, self.masker, self.scanner = checker, retrieval, masker, scanner
        self.max_user_turns = max_user_turns
        self.cache_size = cache_size
        self.stream_window = stream_window
        self._cache: OrderedDict[str, RailResult] = OrderedDict()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="chimera-rails", initializer=_one_torch_thread)
        rails.register_action(self._check_input_action, "chimera_check_input")
        rails.register_action(self._mask_action, "chimera_mask_pii")
        rails.register_action(self._retrieval_action, "chimera_check_retrieval")

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _check_input_action(self, text: str) -> dict[str, Any]:
        verdict: Verdict = await self._run(self.checker.check, text)
        _VERDICTS.get([]).append(verdict)
        return {"blocked": verdict.blocked, "text": verdict.text}

    async def _mask_action(self, text: str) -> str:
        masked: str = await self._run(self.masker.mask, text)
        if masked != text:
            _VERDICTS.get([]).append(Verdict(False, masked, "pii"))
        return masked

    async def _retrieval_action(self, text: str) -> str:
        verdict: Verdict = await self._run(self.retrieval.check, text)
        return verdict.text

    async def check_input(self, messages: list[ChatMessage]) -> RailResult:
        users = [i for i, m in enumerate(messages) if m.role == "user"][-self.max_user_turns :]
        rewritten = list(messages)
        newest: RailResult | None = None
        rail = ""
        for i in reversed(users):  # newest first: it is the one most likely to be new
            verdict = await self._check_one(messages[i].content)
            if not verdict.allowed:
                return verdict
            newest = newest or verdict
            if verdict.text is not None and verdict.text != messages[i].content:
                rewritten[i] = ChatMessage(role="user", content=verdict.text)
                rail = "pii"
        return RailResult(allowed=True, messages=rewritten, rail=rail, score=newest.score if newest else None)

    async def _check_one(self, text: str) -> RailResult:
        if text in self._cache:
            self._cache.move_to_end(text)
            return self._cache[text]
        result = await self._through_nemo([{"role": "user", "content": text}], "input")
        if result.allowed and self.cache_size:
            self._cache[text] = result
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return result

    async def _through_nemo(self, messages: list[dict[str, str]], kind: str) -> RailResult:
        from nemoguardrails.rails.llm.options import RailStatus, RailType

        verdicts: list[Verdict] = []
        token = _VERDICTS.set(verdicts)
        try:
            outcome = await self.rails.check_async(messages, rail_types=[RailType(kind)])
        except Exception as e:  # NeMo itself failed: fail closed, with the reason in the log
            log.exception("NeMo %s rails failed; blocking", kind)
            return RailResult(allowed=False, rail="rails_error", reason=f"{type(e).__name__}: {e}")
        finally:
            _VERDICTS.reset(token)
        deciding = next((v for v in verdicts if v.blocked), verdicts[-1] if verdicts else None)
        if outcome.status == RailStatus.BLOCKED:
            if deciding is None or not deciding.blocked:  # a flow blocked without our verdict: an action raised
                return RailResult(allowed=False, rail=outcome.rail or "rails_error", reason="a rail action failed")
            return RailResult(allowed=False, rail=deciding.rail, score=deciding.score, reason=deciding.reason)
        return RailResult(allowed=True, text=outcome.content, rail=deciding.rail if deciding else "",
                          score=deciding.score if deciding else None)  # fmt: skip

    async def check_output(self, text: str) -> RailResult:
        if not text.strip():
            return RailResult(allowed=True, text=text)
        return await self._through_nemo([{"role": "assistant", "content": text}], "output")

    async def check_retrieval(self, chunks: list[str]) -> list[RailResult]:
        results = []
        for chunk in chunks:
            v: Verdict = await self._run(self.retrieval.check, chunk)
            results.append(RailResult(allowed=not v.blocked, text=v.text, rail=v.rail, score=v.score, reason=v.reason))
        return results

    async def check_tool_input(self, tool_name: str, text: str) -> RailResult:
        matched = self.scanner.scan(tool_name, text)
        if matched:
            return RailResult(allowed=False, text=text, rail="tool_input_yara", score=1.0,
                              reason=f"matches {', '.join(matched)}")  # fmt: skip
        return RailResult(allowed=True, text=text)

    def output_stream(self) -> OutputStream:
        return StreamMasker(self.masker, window=self.stream_window)


def quiet_nemo() -> None:
    """No usage reports to NVIDIA (NeMo sends them unless told not to; Chimera never calls out), and no raw user
    text in the logs (NeMo logs every event, message text included, at INFO; masked text is what gets logged)."""
    os.environ["NEMO_GUARDRAILS_NO_USAGE_STATS"] = "1"
    logging.getLogger("nemoguardrails").setLevel(logging.WARNING)
