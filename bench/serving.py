"""Serving overhead: raw vLLM `AsyncLLM` vs Chimera's endpoint (`model=auto`: router → expert, no agent).

Same model, same engine args, same prompts (each rendered with the system prompt of the expert the router picks,
so both sides prefill the same tokens), `ignore_eos` so every request yields exactly `--output-tokens` tokens.
Chimera runs twice: with the config's guardrails (input rails, output PII masking while streaming) and with
`guardrails.enabled: false` (a copy of the config under the data dir). For each concurrency it reports TTFT
p50/p99 and output tokens/s for every side, the overheads and ratios against raw, and where Chimera's time to
first token goes (medians of the spans in the span store), prints JSON and writes it to bench/results/.

    python bench/serving.py --config configs/local.yaml [--prompts ../shared/data/router/dev.jsonl]

Targets (issue 2): TTFT overhead <= 15 ms at p50, throughput >= 90 % of raw at concurrency 8.
"""

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import statistics
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from chimera.cluster.engines import local_engine_specs
from chimera.config import ChimeraConfig, load_config
from chimera.messages import ChatMessage
from chimera.models.expert import compose_prompt
from chimera.models.router.heuristic import HeuristicRouter
from chimera.server_process import ServerProcess, free_port
from chimera.spans.factory import span_store_path
from chimera.spans.sqlite import SqliteSpanStore
from chimera.spans.store import TraceNotFoundError

RESULTS = Path(__file__).parent / "results"
BUILTIN_PROMPTS = [
    "Write a Python function that merges two sorted lists.",
    "Explain what a SQL LEFT JOIN does, with an example.",
    "Fix this bug: `for i in range(len(xs)): xs.remove(xs[i])`",
    "What is 15% of 240?",
    "Solve 2x^2 - 8 = 0 for x.",
    "A train travels 300 km in 2.5 hours. What is its average speed?",
    "Summarize: the meeting moved the launch to March because the audit found two open security issues.",
    "Translate to French: the invoice is attached and payment is due in thirty days.",
    "Rewrite this more politely: send me the report now.",
    "What is the capital of Japan?",
    "Give me three tips for a good night's sleep.",
    "Who wrote Pride and Prejudice?",
    "How do I reverse a string in JavaScript?",
    "Compute the derivative of x^3 + 2x.",
    "Write a haiku about autumn rain.",
    "Why is the sky blue?",
]


@dataclass
class Sample:
    ttft_s: float
    tokens: int
    began_ns: int = 0  # wall clock at the request's start (to place it among the server's spans)
    trace_id: str = ""  # the server's trace of the request (x-chimera-trace-id)


@dataclass
class RunStats:
    concurrency: int
    requests: int
    ttft_p50_ms: float
    ttft_p99_ms: float
    output_tokens: int
    wall_s: float
    output_tokens_per_s: float


def load_prompts(path: Path | None, n: int, seed: int) -> list[str]:
    """`n` prompts: from a JSONL file with a `text` field (any router/guard file), else the built-in set."""
    if path is None:
        pool = BUILTIN_PROMPTS
    else:
        pool = [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]
        if not pool:
            raise SystemExit(f"{path}: no prompts")
    if len(pool) >= n:
        return random.Random(seed).sample(pool, n)
    return [pool[i % len(pool)] for i in range(n)]


def _stats(concurrency: int, samples: list[Sample], wall_s: float) -> RunStats:
    ttfts = sorted(s.ttft_s for s in samples)
    tokens = sum(s.tokens for s in samples)
    return RunStats(
        concurrency=concurrency,
        requests=len(samples),
        ttft_p50_ms=1000 * statistics.median(ttfts),
        ttft_p99_ms=1000 * ttfts[min(len(ttfts) - 1, round(0.99 * (len(ttfts) - 1)))],
        output_tokens=tokens,
        wall_s=wall_s,
        output_tokens_per_s=tokens / wall_s,
    )


async def _drive(concurrency: int, prompts: list[str], one: Any, seen: list[Sample] | None = None) -> RunStats:
    """Run `one(prompt)` over all prompts with at most `concurrency` in flight (the samples go to `seen`)."""
    gate = asyncio.Semaphore(concurrency)

    async def gated(prompt: str) -> Sample:
        async with gate:
            return await one(prompt)

    began = time.perf_counter()
    samples = await asyncio.gather(*(gated(p) for p in prompts))
    if seen is not None:
        seen.extend(samples)
    return _stats(concurrency, list(samples), time.perf_counter() - began)


async def bench_raw(config: ChimeraConfig, prompts: list[str], levels: list[int], output_tokens: int) -> list[RunStats]:
    """vLLM's AsyncLLM in this process, fed the token ids Chimera's expert would send."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine.async_llm import AsyncLLM

    from chimera.models.engine.vllm_engine import engine_args

    router = HeuristicRouter()
    engine_name = config.experts["chat"].engine
    spec = local_engine_specs(config)[engine_name]
    engine = AsyncLLM.from_engine_args(engine_args(spec))
    tokenizer: Any = engine.tokenizer  # set: the engine was built with its tokenizer

    def render(prompt: str) -> list[int]:
        ask = [ChatMessage(role="user", content=prompt)]
        expert = config.experts[router.route(ask).expert]
        messages = [m.model_dump() for m in compose_prompt(expert.system_prompt, ask)]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return list(tokenizer.encode(text, add_special_tokens=False))

    params = SamplingParams(
        max_tokens=output_tokens, temperature=0.0, ignore_eos=True, output_kind=RequestOutputKind.DELTA
    )

    async def one(prompt: str) -> Sample:
        began = time.perf_counter()
        ttft, tokens = 0.0, 0
        async for out in engine.generate({"prompt_token_ids": render(prompt)}, params, uuid.uuid4().hex):
            if tokens == 0 and out.outputs[0].token_ids:
                ttft = time.perf_counter() - began
            tokens += len(out.outputs[0].token_ids)
        return Sample(ttft, tokens)

    try:
        await _drive(2, prompts[:4], one)  # warm-up
        return [await _drive(c, prompts, one) for c in levels]
    finally:
        engine.shutdown()


async def bench_endpoint(
    url: str, prompts: list[str], levels: list[int], output_tokens: int
) -> tuple[list[RunStats], list[list[Sample]]]:
    """Chimera's OpenAI endpoint over HTTP, streaming, `model=auto`; the samples of each level too."""
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=httpx.Limits(max_connections=64)) as http:

        async def one(prompt: str) -> Sample:
            body = {
                "model": "auto",
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": output_tokens,
                "temperature": 0.0,
                "ignore_eos": True,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            began, began_ns = time.perf_counter(), time.time_ns()
            ttft, tokens = 0.0, 0
            async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                trace_id = response.headers.get("x-chimera-trace-id", "")
                if response.status_code != 200:
                    raise SystemExit(f"endpoint answered {response.status_code}: {await response.aread()!r}")
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[6:])
                    if not ttft and any(c["delta"].get("content") for c in event.get("choices", [])):
                        ttft = time.perf_counter() - began
                    if event.get("usage"):
                        tokens = event["usage"]["completion_tokens"]
            return Sample(ttft, tokens, began_ns, trace_id)

        await _drive(2, prompts[:4], one)  # warm-up
        samples: list[list[Sample]] = [[] for _ in levels]
        return [await _drive(c, prompts, one, seen) for c, seen in zip(levels, samples, strict=True)], samples


#: Points on one request's way to its first token, each from the span store: (name, from, to).
_LEGS = (
    ("http_to_api", "client", "root.start"),
    ("api_to_expert", "root.start", "expert.start"),
    ("input_rails", "rails.start", "rails.end"),
    ("routing", "route.start", "route.end"),
    ("ray_call_to_replica", "expert.start", "engine.start"),
    ("engine_ttft", "engine.start", "engine.first"),
    ("first_delta_to_api", "engine.first", "expert.first"),
    ("api_to_client", "expert.first", "client.first"),
)


def ttft_breakdown(store_path: Path, samples: list[Sample]) -> dict[str, float]:
    """Median milliseconds of each leg of Chimera's time to first token (`_LEGS`), from the spans of `samples`.

    Empty when the span store is missing (OTLP exporter) or holds none of them. `api_to_client` is what happens
    after the API got the first delta: output masking, the SSE writer, HTTP and the client's parsing.
    """
    wanted = {s.trace_id: s for s in samples if s.trace_id}
    if not wanted or not store_path.exists():
        return {}
    spans: dict[str, dict[str, dict[str, Any]]] = {}
    store = SqliteSpanStore(store_path)
    try:
        for trace_id in wanted:
            try:
                spans[trace_id] = {record["name"]: record for record in store.trace(trace_id)}
            except TraceNotFoundError:
                continue
    finally:
        store.close()
    legs: dict[str, list[float]] = {name: [] for name, _, _ in _LEGS}
    for trace_id, named in spans.items():
        points = _points(wanted[trace_id], named)
        for name, start, end in _LEGS:
            if start in points and end in points:
                legs[name].append((points[end] - points[start]) / 1e6)
    return {name: round(statistics.median(values), 2) for name, values in legs.items() if values}


_SPANS = (
    ("root", "POST /v1/chat/completions"),
    ("rails", "guardrails.input"),
    ("route", "router.route"),
    ("expert", "expert.generate"),
    ("engine", "engine.generate"),
)


def _points(sample: Sample, named: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Wall-clock nanoseconds of one request's `_LEGS` points."""
    points = {"client": float(sample.began_ns), "client.first": sample.began_ns + sample.ttft_s * 1e9}
    for key, name in _SPANS:
        if span := named.get(name):
            points[f"{key}.start"], points[f"{key}.end"] = span["start_ns"], span["end_ns"]
            if (ttft_ms := span["attributes"].get("chimera.ttft_ms")) is not None:
                points[f"{key}.first"] = span["start_ns"] + ttft_ms * 1e6
    return points


@dataclass
class ChimeraRun:
    stats: list[RunStats]
    breakdown: list[dict[str, float]]  # per concurrency level, see `ttft_breakdown`


def bench_chimera(
    config_path: Path,
    config: ChimeraConfig,
    prompts: list[str],
    levels: list[int],
    output_tokens: int,
    *,
    guardrails: bool,
) -> ChimeraRun:
    """Start `chimera serve` (guardrails as configured, or disabled in a copy of the config) and bench it."""
    data_dir = Path(config.data_dir)
    if not guardrails:
        raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        raw["guardrails"] = {**(raw.get("guardrails") or {}), "enabled": False}
        data_dir.mkdir(parents=True, exist_ok=True)
        config_path = data_dir / "bench-serving-guardrails-off.yaml"
        config_path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    with ServerProcess(config_path, free_port(), data_dir / "bench-server.log") as server:
        stats, samples = asyncio.run(bench_endpoint(server.url, prompts, levels, output_tokens))
    store_path = span_store_path(data_dir)
    return ChimeraRun(stats, [ttft_breakdown(store_path, level) for level in samples])


def compare(raw: list[RunStats], chimera: list[RunStats]) -> list[dict[str, float]]:
    """Chimera against raw vLLM at each concurrency: TTFT overheads (ms) and the throughput ratio."""
    return [
        {
            "concurrency": r.concurrency,
            "ttft_p50_overhead_ms": c.ttft_p50_ms - r.ttft_p50_ms,
            "ttft_p99_overhead_ms": c.ttft_p99_ms - r.ttft_p99_ms,
            "throughput_ratio": c.output_tokens_per_s / r.output_tokens_per_s,
        }
        for r, c in zip(raw, chimera, strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/local.yaml")
    parser.add_argument("--prompts", type=Path, help="JSONL with a `text` field (default: a built-in set of 16)")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-guardrails-off", action="store_true", help="bench Chimera only as configured")
    args = parser.parse_args()

    config = load_config(args.config)
    prompts = load_prompts(args.prompts, args.requests, args.seed)

    raw = asyncio.run(bench_raw(config, prompts, args.concurrency, args.output_tokens))
    gc.collect()  # AsyncLLM's __del__ at interpreter exit would shut it down a second time, noisily
    settings = {"on": True} if args.skip_guardrails_off else {"on": True, "off": False}
    runs = {
        name: bench_chimera(Path(args.config), config, prompts, args.concurrency, args.output_tokens, guardrails=on)
        for name, on in settings.items()
    }

    comparisons = {name: compare(raw, run.stats) for name, run in runs.items()}
    report: dict[str, Any] = {
        "benchmark": "serving",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "config": args.config,
        "model": config.engines[config.experts["chat"].engine].served_name,
        "requests": args.requests,
        "output_tokens": args.output_tokens,
        "prompts": str(args.prompts or "builtin"),
        "raw_asyncllm": [asdict(r) for r in raw],
        "chimera_auto": [asdict(c) for c in runs["on"].stats],  # guardrails as configured
        "comparison": comparisons["on"],
        "ttft_breakdown_ms": {name: run.breakdown for name, run in runs.items()},
        "targets": {"ttft_p50_overhead_ms_max": 15, "throughput_ratio_min_at_8": 0.9},
    }
    if "off" in runs:
        report["chimera_auto_guardrails_off"] = [asdict(c) for c in runs["off"].stats]
        report["comparison_guardrails_off"] = comparisons["off"]
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"serving-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"\nwritten to {out}\n")
    print_summary(raw, runs, comparisons)


def print_summary(
    raw: list[RunStats], runs: dict[str, ChimeraRun], comparisons: dict[str, list[dict[str, float]]]
) -> None:
    """One line per concurrency and guardrails setting, raw and Chimera side by side, then the TTFT legs."""
    print("                   TTFT p50 ms raw/chimera  p99 ms raw/chimera  tokens/s raw/chimera  overheads, ratio")
    for name, run in runs.items():
        for r, c, row in zip(raw, run.stats, comparisons[name], strict=True):
            p50, p99 = f"{r.ttft_p50_ms:7.1f} {c.ttft_p50_ms:7.1f}", f"{r.ttft_p99_ms:7.1f} {c.ttft_p99_ms:7.1f}"
            rates = f"{r.output_tokens_per_s:7.1f} {c.output_tokens_per_s:7.1f}"
            print(
                f"c={r.concurrency} guardrails {name:3}   {p50}     {p99}     {rates}   "
                f"p50 {row['ttft_p50_overhead_ms']:+.1f} ms, p99 {row['ttft_p99_overhead_ms']:+.1f} ms, "
                f"{100 * row['throughput_ratio']:.1f} % of raw"
            )
    for name, run in runs.items():
        for r, legs in zip(raw, run.breakdown, strict=True):
            if legs:
                shown = ", ".join(f"{leg} {ms:.1f}" for leg, ms in legs.items())
                print(f"c={r.concurrency} guardrails {name} TTFT legs (ms, p50): {shown}")


if __name__ == "__main__":  # vLLM spawns processes: keep the entry point guarded
    main()
