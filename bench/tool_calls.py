"""Function-calling eval: are the tool calls an expert model makes for OpenAI clients valid, and the right ones?

Starts `chimera serve` on the config, then sends every prompt of the set once per model and `tool_choice`
(`auto`, `required`) with all of the set's tools offered, one request at a time, not streamed, temperature 0:

- valid: a call names an offered tool and its `arguments` parse as JSON that validates against that tool's
  parameter schema (share of all calls made);
- right: `auto` makes a call of the expected tool, or none where the prompt expects none; `required` calls the
  expected tool (prompts that expect none are skipped there);
- calls per answer, and the wall time per request.

Then the cost of guided decoding on time to first token: the same prompts streamed as free text and with
`response_format: json_object`, side by side (alternating), median TTFT of each and their ratio.

    python bench/tool_calls.py --config configs/local.yaml [--data bench/data/tool_use.json]
        [--models chimera-chat,auto] [--limit N] [--ttft-prompts 10]

The data file: {"tools": {name: {description, parameters}}, "prompts": [{id, prompt, expect: name | null}]}.
Prints a table, writes bench/results/tool_calls.json.
"""

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jsonschema

from chimera.server_process import ServerProcess, free_port

BENCH = Path(__file__).parent
CHOICES = ("auto", "required")


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str
    expect: str | None


def load(path: Path) -> tuple[dict[str, Any], list[Prompt]]:
    """The set's tools (OpenAI `tools` entries) and prompts; a clear error for a file of another shape."""
    try:
        raw = json.loads(path.read_text())
        tools: dict[str, Any] = {
            name: {"type": "function", "function": {"name": name, **spec}} for name, spec in raw["tools"].items()
        }
        prompts = [Prompt(p["id"], p["prompt"], p.get("expect")) for p in raw["prompts"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise SystemExit(
            f"{path}: not a tool-use set ({{tools: {{...}}, prompts: [{{id, prompt, expect}}]}}): {e}"
        ) from e
    for p in prompts:
        if p.expect is not None and p.expect not in tools:
            raise SystemExit(f"{path}: prompt {p.id} expects {p.expect}, which is not among the tools")
    for tool in tools.values():
        jsonschema.Draft202012Validator.check_schema(tool["function"].get("parameters") or {})
    return tools, prompts


def judge(calls: list[dict[str, Any]], tools: dict[str, Any]) -> list[bool]:
    """Per call: names an offered tool, and its arguments are JSON valid against that tool's schema."""
    valid = []
    for call in calls:
        tool = tools.get(call["function"]["name"])
        try:
            arguments = json.loads(call["function"]["arguments"])
            jsonschema.validate(arguments, (tool or {}).get("function", {}).get("parameters") or {"type": "object"})
            valid.append(tool is not None)
        except (ValueError, jsonschema.ValidationError):
            valid.append(False)
    return valid


def run_calls(http: httpx.Client, model: str, choice: str, prompts: list[Prompt], tools: dict[str, Any]) -> dict:
    made, valid, right, asked, seconds = 0, 0, 0, 0, []
    failures: list[dict[str, Any]] = []
    for p in prompts:
        if choice == "required" and p.expect is None:
            continue
        body = {"model": model, "messages": [{"role": "user", "content": p.text}], "tools": list(tools.values()),
                "tool_choice": choice, "temperature": 0, "max_tokens": 128}  # fmt: skip
        began = time.perf_counter()
        response = http.post("/v1/chat/completions", json=body)
        seconds.append(time.perf_counter() - began)
        response.raise_for_status()
        calls = response.json()["choices"][0]["message"].get("tool_calls") or []
        verdicts = judge(calls, tools)
        asked += 1
        made += len(calls)
        valid += sum(verdicts)
        names = [c["function"]["name"] for c in calls]
        ok = (p.expect in names) if p.expect is not None else not calls
        right += ok
        if not ok or not all(verdicts):
            failures.append({"id": p.id, "expect": p.expect, "calls": calls})
    return {
        "prompts": asked,
        "calls": made,
        "valid_rate": valid / made if made else None,
        "right_rate": right / asked if asked else None,
        "calls_per_answer": made / asked if asked else None,
        "mean_s": statistics.fmean(seconds) if seconds else None,
        "misses": failures,
    }


def ttft(http: httpx.Client, model: str, text: str, response_format: dict[str, str] | None) -> float:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}], "stream": True,
                            "temperature": 0, "max_tokens": 16}  # fmt: skip
    if response_format:
        body["response_format"] = response_format
    began = time.perf_counter()
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                return time.perf_counter() - began
    return time.perf_counter() - began  # nothing generated: the whole request


def guided_ttft(http: httpx.Client, model: str, prompts: list[Prompt]) -> dict[str, Any]:
    free, guided = [], []
    for p in prompts:  # alternating, so drift on a noisy machine falls on both
        free.append(ttft(http, model, p.text, None))
        guided.append(ttft(http, model, p.text + " Answer in JSON.", {"type": "json_object"}))
    median_free, median_guided = statistics.median(free), statistics.median(guided)
    return {"prompts": len(prompts), "free_ttft_ms": 1000 * median_free, "guided_ttft_ms": 1000 * median_guided,
            "ratio": median_guided / median_free}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/local.yaml"))
    parser.add_argument("--data", type=Path, default=BENCH / "data" / "tool_use.json")
    parser.add_argument("--models", default="chimera-chat,auto", help="comma-separated `model` values")
    parser.add_argument("--limit", type=int, help="the first N prompts only")
    parser.add_argument("--ttft-prompts", type=int, default=10, help="prompts for the TTFT comparison (0: none)")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "tool_calls.json")
    args = parser.parse_args()

    tools, prompts = load(args.data)
    prompts = prompts[: args.limit] if args.limit else prompts
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    began = time.monotonic()
    results: dict[str, Any] = {}
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "chimera-bench-tool-calls.log"
    with ServerProcess(args.config, free_port(), log) as server, httpx.Client(base_url=server.url, timeout=300) as http:
        print(f"server up in {time.monotonic() - began:.0f}s; {len(prompts)} prompts x {models}", flush=True)
        for model in models:
            results[model] = {choice: run_calls(http, model, choice, prompts, tools) for choice in CHOICES}
        ttft_result = guided_ttft(http, models[0], prompts[: args.ttft_prompts]) if args.ttft_prompts else None
    report = {
        "benchmark": "tool_calls",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "config": str(args.config),
        "data": str(args.data),
        "models": results,
        "guided_ttft": ttft_result,
        "wall_s": time.monotonic() - began,
    }
    print(f"{'model':<14}{'choice':<10}{'prompts':>8}{'calls':>7}{'valid':>8}{'right':>8}{'mean s':>8}")
    for model, by_choice in results.items():
        for choice, r in by_choice.items():
            valid = "-" if r["valid_rate"] is None else f"{r['valid_rate']:.2f}"
            print(f"{model:<14}{choice:<10}{r['prompts']:>8}{r['calls']:>7}{valid:>8}{r['right_rate']:>8.2f}"
                  f"{r['mean_s']:>8.2f}")  # fmt: skip
    if ttft_result:
        print(f"TTFT free {ttft_result['free_ttft_ms']:.0f} ms, json_object {ttft_result['guided_ttft_ms']:.0f} ms, "
              f"ratio {ttft_result['ratio']:.2f}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
