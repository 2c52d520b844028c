"""Memory-model benchmark: state bytes vs tokens read beside a transformer's KV cache, read speed, recall latency.

1. State bytes after 1k … 128k tokens, measured on a tiny random Mamba-2 (read for real, up to 128k tokens) and
   computed for mamba2-130m's config, beside the KV cache SmolLM2-135M (a transformer of that size) would hold
   for the same tokens: 2·layers·kv_heads·head_dim·tokens·bytes.
2. Read throughput (tokens/s, tokenization included) and recall latency on this machine, for a random-weight
   Mamba-2 with mamba2-130m's config, on transformers' pure-PyTorch path (no CUDA kernels).
3. On paper, at 128k tokens in bf16: the state of mamba2-2.7b vs the KV cache of Llama-2-7B (32 KV heads) and
   Mistral-7B (8 KV heads, GQA).

Writes bench/results/memory.json and a log-log plot, bench/results/memory.svg (drawn by hand: matplotlib is not a
dependency). No weights are downloaded: models are random; SmolLM2's config and tokenizer are read from
.chimera/models when `make models` has put them there, else its published config is used.

    python bench/memory.py [--read-tokens 4096] [--threads 1]
"""

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from chimera.models.memory.mamba import MemoryModel
from chimera.models.memory.state import StateSpec

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "bench" / "results"
SMOLLM2 = ROOT / ".chimera" / "models" / "smollm2-135m-instruct"
POINTS = [1 << k for k in range(10, 18)]  # 1k … 128k tokens (1,024 … 131,072)
K128 = 1 << 17

# Mamba-2 configs as published (state-spaces/mamba2-*): d_model, layers, d_state, expand, headdim, ngroups, d_conv.
MAMBA2_130M: dict[str, int] = {
    "hidden_size": 768,
    "num_hidden_layers": 24,
    "state_size": 128,
    "expand": 2,
    "head_dim": 64,
    "n_groups": 1,
    "conv_kernel": 4,
    "vocab_size": 50288,
    "chunk_size": 256,
}
MAMBA2_2_7B: dict[str, int] = {
    "hidden_size": 2560,
    "num_hidden_layers": 64,
    "state_size": 128,
    "expand": 2,
    "head_dim": 64,
    "n_groups": 1,
    "conv_kernel": 4,
}
TINY: dict[str, int] = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "state_size": 32,
    "expand": 2,
    "head_dim": 32,
    "n_groups": 1,
    "conv_kernel": 4,
    "chunk_size": 64,
}
# Transformers' KV caches: (layers, kv_heads, head_dim).
SMOLLM2_PUBLISHED = (30, 3, 64)
LLAMA2_7B = (32, 32, 128)
MISTRAL_7B = (32, 8, 128)


def kv_bytes(shape: tuple[int, int, int], tokens: int, dtype_bytes: int) -> int:
    """Keys and values of every layer for `tokens` tokens: 2·layers·kv_heads·head_dim·tokens·bytes."""
    layers, kv_heads, head_dim = shape
    return 2 * layers * kv_heads * head_dim * tokens * dtype_bytes


def smollm2_shape() -> tuple[tuple[int, int, int], str]:
    """SmolLM2-135M's KV shape from its local config.json, else the published one."""
    try:
        c = json.loads((SMOLLM2 / "config.json").read_text())
        head_dim = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
        return (c["num_hidden_layers"], c["num_key_value_heads"], head_dim), str(SMOLLM2 / "config.json")
    except (OSError, KeyError, ValueError):
        return SMOLLM2_PUBLISHED, "published config (no local folder)"


def mamba2_spec(fields: dict[str, int], dtype: torch.dtype, ssm_dtype: torch.dtype) -> StateSpec:
    config = SimpleNamespace(**fields, num_heads=fields["expand"] * fields["hidden_size"] // fields["head_dim"])
    return StateSpec.from_config(config, dtype=dtype, ssm_dtype=ssm_dtype)


def load_tokenizer() -> Any:
    """SmolLM2's tokenizer (a real 49k byte-level BPE) when present, else a byte-level BPE trained here."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if (SMOLLM2 / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(SMOLLM2, local_files_only=True)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=8192,
        special_tokens=["<|endoftext|>"],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([corpus()], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def corpus() -> str:
    """Real prose and code to read: this repository's docs and Python sources."""
    files = sorted(
        [*ROOT.glob("docs/*.md"), *ROOT.glob("*.md"), *ROOT.glob("chimera/*.py"), *ROOT.glob("models/**/*.py")]
    )
    return "\n\n".join(p.read_text(errors="replace") for p in files)


def random_model(fields: dict[str, int], tokenizer: Any, chunk_tokens: int) -> MemoryModel:
    from transformers import Mamba2Config, Mamba2ForCausalLM

    vocab = max(fields.get("vocab_size", 0), len(tokenizer))
    num_heads = fields["expand"] * fields["hidden_size"] // fields["head_dim"]
    values: dict[str, Any] = {**fields, "vocab_size": vocab}
    config = Mamba2Config(
        **values,
        num_heads=num_heads,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = MemoryModel(Mamba2ForCausalLM(config).eval(), tokenizer, chunk_tokens=chunk_tokens)
    model.eos_ids = set()  # random weights: never stop early, so every recall generates exactly max_tokens
    return model


def state_curve(model: MemoryModel) -> list[dict[str, int]]:
    """Read random token ids up to each point; the state's tensor bytes and stored (safetensors) bytes there."""
    state, rows = model.empty_state(), []
    g = torch.Generator().manual_seed(0)
    for point in POINTS:
        ids = torch.randint(0, len(model.tokenizer), (point - state.tokens_read,), generator=g).tolist()
        model.read_tokens(state, ids)
        rows.append({"tokens": state.tokens_read, "state_bytes": state.nbytes, "stored_bytes": len(state.to_bytes())})
    return rows


def speed(model: MemoryModel, tokens: int, recall_tokens: int, repeats: int = 3) -> dict[str, Any]:
    """Read throughput over `tokens` tokens of real text, then recall latency (a short query + `recall_tokens`)."""
    ids = model.tokenizer.encode(corpus(), add_special_tokens=False, verbose=False)
    text = model.tokenizer.decode((ids * (tokens // len(ids) + 1))[:tokens])
    model.read(model.empty_state(), text[:2000])  # first calls allocate; not what we time
    state = model.empty_state()
    start = time.perf_counter()
    model.read(state, text)
    read_s = time.perf_counter() - start
    query = "What does the memory model keep per session?"
    latencies = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.recall(state, query, recall_tokens)
        latencies.append(time.perf_counter() - start)
    recall_s = statistics.median(latencies)
    query_tokens = len(model.tokenizer.encode(query, add_special_tokens=False))
    return {
        "tokens_read": state.tokens_read,
        "read_s": round(read_s, 2),
        "read_tokens_per_s": round(state.tokens_read / read_s, 1),
        "recall": {
            "query_tokens": query_tokens,
            "new_tokens": recall_tokens,
            "latency_s": round(recall_s, 3),
            "ms_per_new_token": round(1e3 * recall_s / recall_tokens, 1),
        },
        "state_bytes_measured": state.nbytes,
    }


def svg_plot(series: list[tuple[str, str, list[tuple[int, float]]]], path: Path) -> None:
    """A log-log line plot of bytes against tokens, one polyline per series, legend on the right."""
    import math

    w, h, left, top, pw, ph = 900, 480, 80, 30, 560, 400
    xs = [x for _, _, pts in series for x, _ in pts]
    ys = [y for _, _, pts in series for _, y in pts]
    x0, x1 = math.log10(min(xs)), math.log10(max(xs))
    y0, y1 = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))

    def px(x: float, y: float) -> str:
        u, v = (math.log10(x) - x0) / (x1 - x0), (math.log10(y) - y0) / (y1 - y0)
        return f"{left + pw * u:.1f},{top + ph * (1 - v):.1f}"

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + 40}" font-family="sans-serif" '
        f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>',
    ]
    for e in range(y0, y1 + 1):
        y = top + ph * (1 - (e - y0) / (y1 - y0))
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">1e{e} B</text>')
    for t in POINTS:
        x = left + pw * (math.log10(t) - x0) / (x1 - x0)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle">{t // 1024}k</text>')
    out.append(f'<text x="{left + pw / 2}" y="{top + ph + 36}" text-anchor="middle">tokens read (log)</text>')
    for i, (label, colour, pts) in enumerate(series):
        dash = ' stroke-dasharray="6,4"' if "KV" in label else ""
        points = " ".join(px(x, y) for x, y in pts)
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        ly = top + 10 + 22 * i
        out.append(
            f'<line x1="{left + pw + 15}" x2="{left + pw + 45}" y1="{ly}" y2="{ly}" stroke="{colour}" '
            f'stroke-width="2"{dash}/><text x="{left + pw + 52}" y="{ly + 4}">{label}</text>'
        )
    out.append(
        f'<text x="{left}" y="18">Memory per session: Mamba-2 state (solid) vs transformer KV cache (dashed)</text>'
    )
    path.write_text("\n".join([*out, "</svg>"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--read-tokens", type=int, default=4096, help="tokens the 130m-config model reads, timed")
    parser.add_argument("--recall-tokens", type=int, default=32, help="tokens each timed recall generates")
    parser.add_argument("--chunk-tokens", type=int, default=2048, help="tokens per forward pass while reading")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 = what a memory actor gets)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    tokenizer = load_tokenizer()
    smol_shape, smol_source = smollm2_shape()
    tiny = random_model(TINY, tokenizer, chunk_tokens=4096)
    curve = state_curve(tiny)
    spec_130m = mamba2_spec(MAMBA2_130M, torch.float32, torch.float32)
    model_130m = random_model(MAMBA2_130M, tokenizer, chunk_tokens=args.chunk_tokens)
    speed_130m = speed(model_130m, args.read_tokens, args.recall_tokens)
    params_130m = sum(p.numel() for p in model_130m.model.parameters())

    bf16_2_7b = mamba2_spec(MAMBA2_2_7B, torch.bfloat16, torch.bfloat16)
    fp32_ssm_2_7b = mamba2_spec(MAMBA2_2_7B, torch.bfloat16, torch.float32)
    paper = {
        "tokens": K128,
        "mamba2_2.7b_state_bf16": bf16_2_7b.total_bytes,
        "mamba2_2.7b_state_bf16_conv_fp32_ssm": fp32_ssm_2_7b.total_bytes,  # what the pure-PyTorch path keeps
        "llama2_7b_kv_bf16": kv_bytes(LLAMA2_7B, K128, 2),
        "mistral_7b_kv_bf16": kv_bytes(MISTRAL_7B, K128, 2),
    }
    paper["llama2_7b_over_mamba2_2.7b"] = round(paper["llama2_7b_kv_bf16"] / bf16_2_7b.total_bytes, 1)
    paper["mistral_7b_over_mamba2_2.7b"] = round(paper["mistral_7b_kv_bf16"] / bf16_2_7b.total_bytes, 1)
    report = {
        "state_vs_tokens": [
            {
                **row,
                "mamba2_130m_state_bytes_fp32": spec_130m.total_bytes,
                "smollm2_135m_kv_bytes_fp32": kv_bytes(smol_shape, row["tokens"], 4),
            }
            for row in curve
        ],
        "tiny_model": {**TINY, "parameters": sum(p.numel() for p in tiny.model.parameters())},
        "smollm2_135m_kv_shape": {"layers_kv_heads_head_dim": smol_shape, "source": smol_source},
        "speed_mamba2_130m_config": {
            **speed_130m,
            "parameters": params_130m,
            "weights": "random",
            "chunk_tokens": args.chunk_tokens,
            "state_bytes_analytic": spec_130m.total_bytes,
        },
        "paper_128k_tokens": paper,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}, "
        f"load average {os.getloadavg()[0]:.1f} at the end",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory.json").write_text(json.dumps(report, indent=2))
    svg_plot(
        [
            ("SmolLM2-135M KV, fp32", "#d62728", [(r["tokens"], kv_bytes(smol_shape, r["tokens"], 4)) for r in curve]),
            ("Llama-2-7B KV, bf16", "#8c564b", [(t, kv_bytes(LLAMA2_7B, t, 2)) for t in POINTS]),
            ("Mistral-7B KV, bf16", "#ff7f0e", [(t, kv_bytes(MISTRAL_7B, t, 2)) for t in POINTS]),
            ("mamba2-2.7b state, bf16", "#1f77b4", [(t, bf16_2_7b.total_bytes) for t in POINTS]),
            ("mamba2-130m state, fp32", "#2ca02c", [(t, spec_130m.total_bytes) for t in POINTS]),
            ("tiny Mamba-2, measured", "#9467bd", [(r["tokens"], r["state_bytes"]) for r in curve]),
        ],
        RESULTS / "memory.svg",
    )
    print_table(report)


def print_table(report: dict[str, Any]) -> None:
    mib = 1 << 20
    print(f"{'tokens':>8} {'tiny state':>11} {'tiny stored':>12} {'mamba2-130m':>12} {'SmolLM2 KV':>12}")
    for r in report["state_vs_tokens"]:
        print(
            f"{r['tokens']:>8} {r['state_bytes']:>11,} {r['stored_bytes']:>12,} "
            f"{r['mamba2_130m_state_bytes_fp32'] / mib:>10.1f}Mi {r['smollm2_135m_kv_bytes_fp32'] / mib:>10.1f}Mi"
        )
    s = report["speed_mamba2_130m_config"]
    print(
        f"\nmamba2-130m config ({s['parameters'] / 1e6:.0f}M params, random): read {s['tokens_read']} tokens in "
        f"{s['read_s']} s = {s['read_tokens_per_s']} tokens/s; recall ({s['recall']['query_tokens']}-token query "
        f"+ {s['recall']['new_tokens']} new) {s['recall']['latency_s']} s = {s['recall']['ms_per_new_token']} ms/token"
    )
    p = report["paper_128k_tokens"]
    gib = 1 << 30
    print(
        f"\nat 128k tokens, bf16: mamba2-2.7b state {p['mamba2_2.7b_state_bf16'] / mib:.1f} MiB "
        f"({p['mamba2_2.7b_state_bf16_conv_fp32_ssm'] / mib:.1f} MiB with an fp32 SSM state) | "
        f"Llama-2-7B KV {p['llama2_7b_kv_bf16'] / gib:.1f} GiB ({p['llama2_7b_over_mamba2_2.7b']}x) | "
        f"Mistral-7B KV {p['mistral_7b_kv_bf16'] / gib:.1f} GiB ({p['mistral_7b_over_mamba2_2.7b']}x)"
    )
    print(f"\n{report['machine']}; wrote {RESULTS / 'memory.json'} and {RESULTS / 'memory.svg'}")


if __name__ == "__main__":
    main()
