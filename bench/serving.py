"""Serving overhead: raw vLLM `AsyncLLM` vs Chimera's endpoint (`model=auto`: router → expert, no agent).

Same model, same engine args, same prompts (each rendered with the system prompt of the expert the router picks,
so both sides prefill the same tokens), `ignore_eos` so every request yields exactly `--output-tokens` tokens.
For each concurrency it reports TTFT p50/p99 and output tokens/s for both sides and their ratios, prints JSON
and writes it to bench/results/.

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

from chimera.config import ChimeraConfig, load_config
from chimera.launcher import ServerProcess, free_port
from chimera.messages import ChatMessage
from chimera.models.expert import compose_prompt
from chimera.models.router.heuristic import HeuristicRouter
from chimera.runtime import local_engine_specs

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


async def _drive(concurrency: int, prompts: list[str], one: Any) -> RunStats:
    """Run `one(prompt)` over all prompts with at most `concurrency` in flight."""
    gate = asyncio.Semaphore(concurrency)

    async def gated(prompt: str) -> Sample:
        async with gate:
            return await one(prompt)

    began = time.perf_counter()
    samples = await asyncio.gather(*(gated(p) for p in prompts))
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
    tokenizer = engine.tokenizer

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


async def bench_endpoint(url: str, prompts: list[str], levels: list[int], output_tokens: int) -> list[RunStats]:
    """Chimera's OpenAI endpoint over HTTP, streaming, `model=auto`."""
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
            began = time.perf_counter()
            ttft, tokens = 0.0, 0
            async with http.stream("POST", "/v1/chat/completions", json=body) as response:
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
            return Sample(ttft, tokens)

        await _drive(2, prompts[:4], one)  # warm-up
        return [await _drive(c, prompts, one) for c in levels]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/local.yaml")
    parser.add_argument("--prompts", type=Path, help="JSONL with a `text` field (default: a built-in set of 16)")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    config = load_config(args.config)
    prompts = load_prompts(args.prompts, args.requests, args.seed)

    raw = asyncio.run(bench_raw(config, prompts, args.concurrency, args.output_tokens))
    gc.collect()  # AsyncLLM's __del__ at interpreter exit would shut it down a second time, noisily
    log = Path(config.data_dir) / "bench-server.log"
    with ServerProcess(Path(args.config), free_port(), log) as server:
        chimera = asyncio.run(bench_endpoint(server.url, prompts, args.concurrency, args.output_tokens))

    comparison = [
        {
            "concurrency": r.concurrency,
            "ttft_p50_overhead_ms": c.ttft_p50_ms - r.ttft_p50_ms,
            "ttft_p99_overhead_ms": c.ttft_p99_ms - r.ttft_p99_ms,
            "throughput_ratio": c.output_tokens_per_s / r.output_tokens_per_s,
        }
        for r, c in zip(raw, chimera, strict=True)
    ]
    report = {
        "benchmark": "serving",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "config": args.config,
        "model": config.engines[config.experts["chat"].engine].served_name,
        "requests": args.requests,
        "output_tokens": args.output_tokens,
        "prompts": str(args.prompts or "builtin"),
        "raw_asyncllm": [asdict(r) for r in raw],
        "chimera_auto": [asdict(c) for c in chimera],
        "comparison": comparison,
        "targets": {"ttft_p50_overhead_ms_max": 15, "throughput_ratio_min_at_8": 0.9},
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"serving-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"\nwritten to {out}")
    for row in comparison:
        p50, p99, ratio = row["ttft_p50_overhead_ms"], row["ttft_p99_overhead_ms"], row["throughput_ratio"]
        print(f"c={row['concurrency']}: TTFT overhead p50 {p50:+.1f} ms, p99 {p99:+.1f} ms;", end=" ")
        print(f"throughput {100 * ratio:.1f} % of raw")


if __name__ == "__main__":  # vLLM spawns processes: keep the entry point guarded
    main()
