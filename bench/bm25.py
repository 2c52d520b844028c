"""BM25 query speed: Chimera's sparse `BM25Index` vs `rank_bm25.BM25Okapi.get_scores`, with identical scores.

The corpus is cut from a BEIR folder's documents into overlapping word windows until it has `--chunks` chunks
(real text, realistic term statistics); both indexes get the same tokens. Reports per-query latency of each
(p50, mean), the speed-up, the largest score difference, and the build times; prints JSON and writes it to
bench/results/bm25.json.

    python bench/bm25.py --beir ../shared/data/retrieval/scifact [--chunks 100000] [--queries 30]

Target (issue 4): >= 50x faster than rank_bm25 on a 100k-chunk corpus, scores equal to 1e-6.
"""

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import rank_bm25

from chimera.tools.search.analysis import analyze
from chimera.tools.search.bm25 import BM25Index
from chimera.tools.search.evaluation import load_beir

RESULTS = Path(__file__).parent / "results"


def windows(words: list[str], size: int, stride: int) -> list[str]:
    return [" ".join(words[i : i + size]) for i in range(0, max(len(words) - size, 0) + 1, stride)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beir", type=Path, required=True)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--window", type=int, default=40, help="words per chunk")
    args = parser.parse_args()

    dataset = load_beir(args.beir)
    words = [w for doc in dataset.documents() for w in f"{doc.title} {doc.text}".split()]
    stride = max(1, (len(words) - args.window) // args.chunks)
    texts = windows(words, args.window, stride)[: args.chunks]
    tokens = [analyze(t) for t in texts]
    queries = [analyze(q) for q in list(dataset.queries.values())[: args.queries]]

    start = time.perf_counter()
    ours = BM25Index()
    ours.add_tokens(tokens)
    ours.scores(["warm"])  # builds the weights
    build_ours = time.perf_counter() - start
    start = time.perf_counter()
    reference = rank_bm25.BM25Okapi(tokens)
    build_reference = time.perf_counter() - start

    ours_s, reference_s, max_diff = [], [], 0.0
    for q in queries:
        t0 = time.perf_counter()
        a = ours.scores(q)
        t1 = time.perf_counter()
        b = reference.get_scores(q)
        t2 = time.perf_counter()
        ours_s.append(t1 - t0)
        reference_s.append(t2 - t1)
        max_diff = max(max_diff, float(np.abs(a - b).max()))
    report = {
        "corpus": str(args.beir),
        "chunks": len(texts),
        "queries": len(queries),
        "mean_query_terms": round(statistics.mean(len(q) for q in queries), 1),
        "chimera_ms": {
            "p50": round(statistics.median(ours_s) * 1e3, 3),
            "mean": round(statistics.mean(ours_s) * 1e3, 3),
        },
        "rank_bm25_ms": {
            "p50": round(statistics.median(reference_s) * 1e3, 1),
            "mean": round(statistics.mean(reference_s) * 1e3, 1),
        },
        "speedup_mean": round(statistics.mean(reference_s) / statistics.mean(ours_s), 1),
        "max_abs_score_diff": max_diff,
        "build_s": {"chimera": round(build_ours, 2), "rank_bm25": round(build_reference, 2)},
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPUs",
    }
    print(json.dumps(report, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bm25.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
