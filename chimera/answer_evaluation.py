"""`chimera eval answers`: how trustworthy the agents' document answers are, end to end on the configured models.

The data is JSONL, one question a line: `{"question", "answer_present": bool, "supporting_source"?: str, ...}`
(other keys are kept but unused). The documents folder is ingested into a fresh data dir, `chimera serve` is
started on a copy of the config pointing at it, and every question is asked of every graph (`model=<graph>`,
one request at a time, not streamed). Per graph:

- `markers_match_rate`: answers whose every `[n]` in the body names an entry of their Sources (goal 1.0);
- `verified_precision`: of the citations marked verified, the share from the question's `supporting_source`
  (questions with one); `cited_precision` the same over all citations (before verification existed);
- `abstain_rate_absent` / `abstain_rate_present`: answers that say the documents do not contain the answer,
  among questions whose answer is absent / present (goals ≥ 0.9 / ≤ 0.05).
"""

import asyncio
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chimera.errors import ChimeraError
from chimera.jsonl import json_objects

DEFAULT_GRAPHS = ("chimera-react", "chimera-team")
_MARKER = re.compile(r"(?<![\w\])\[])(?:\[\d{1,3}(?:\s*,\s*\d{1,3})*\])+")  # as agents/citations.py reads them
_SOURCES = re.compile(r"\n\s*Sources:\n", re.IGNORECASE)


@dataclass(frozen=True)
class AnswerQuestion:
    """One labelled question: whether the documents hold its answer, and which source does."""

    question: str
    answer_present: bool
    supporting_source: str | None = None


@dataclass(frozen=True)
class Answered:
    """One graph's reply to one question, as the API returned it."""

    graph: str
    question: AnswerQuestion
    text: str
    citations: tuple[dict[str, Any], ...]


def load_questions(path: Path) -> list[AnswerQuestion]:
    """The questions of a JSONL file.

    Raises:
        ChimeraError: the file is missing, or a line is not a JSON object with a non-empty `question` and a
            boolean `answer_present` (the message names the line).
    """
    if not path.is_file():
        raise ChimeraError(f"no such data file: {path}")
    questions = []
    for number, row in json_objects(path):
        where = f"{path}:{number}"
        question, present, source = row.get("question"), row.get("answer_present"), row.get("supporting_source")
        if not isinstance(question, str) or not question.strip():
            raise ChimeraError(f"{where}: `question` must be a non-empty string")
        if not isinstance(present, bool):
            raise ChimeraError(f"{where}: `answer_present` must be true or false")
        if source is not None and not isinstance(source, str):
            raise ChimeraError(f"{where}: `supporting_source` must be a string")
        questions.append(AnswerQuestion(question, present, source))
    if not questions:
        raise ChimeraError(f"{path}: no questions")
    return questions


def score_answers(answers: Sequence[Answered]) -> dict[str, Any]:
    """The measures of one graph's answers (see the module docstring)."""
    from chimera.agents.citations import is_abstention

    matched = [_markers_match(a) for a in answers]
    absent = [is_abstention(a.text) for a in answers if not a.question.answer_present]
    present = [is_abstention(a.text) for a in answers if a.question.answer_present]
    verified, cited = [], []
    for a in answers:
        source = a.question.supporting_source
        if not a.question.answer_present or source is None:
            continue
        for c in a.citations:
            right = str(c.get("source", "")).endswith(source) or source in str(c.get("source", ""))
            cited.append(right)
            if c.get("verified") is True:
                verified.append(right)
    return {
        "questions": len(answers),
        "markers_match_rate": _rate(matched),
        "verified_precision": _rate(verified),
        "verified_citations": len(verified),
        "cited_precision": _rate(cited),
        "citations": len(cited),
        "abstain_rate_absent": _rate(absent),
        "abstain_rate_present": _rate(present),
    }


def _rate(flags: Sequence[bool]) -> float | None:
    return round(sum(flags) / len(flags), 3) if flags else None


def _markers_match(answer: Answered) -> bool:
    body = _SOURCES.split(answer.text, maxsplit=1)[0]
    listed = {c.get("n") for c in answer.citations}
    return all(int(n) in listed for group in _MARKER.findall(body) for n in re.findall(r"\d+", group))


def evaluate_answers(
    config_path: Path, data: Path, docs: Path, *, graphs: Sequence[str] = DEFAULT_GRAPHS, max_tokens: int = 200
) -> dict[str, Any]:
    """Ingest `docs` into a fresh data dir, serve the configured models on it, ask every question of every graph.

    Raises:
        ChimeraError: the data or the documents folder is missing or malformed, or the server did not start.
    """
    questions = load_questions(data)
    if not docs.is_dir():
        raise ChimeraError(f"no such documents folder: {docs}")
    import os

    from chimera.server_process import ServerProcess, free_port, ingest, isolated_config

    scratch = Path(tempfile.mkdtemp(prefix="chimera-eval-answers-"))
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "", "NEO4J_URI": ""}
    try:
        isolated = isolated_config(config_path, scratch)
        ingest(isolated, docs, env)
        with ServerProcess(isolated, free_port(), scratch / "server.log", env=env) as server:
            answers = asyncio.run(_ask_all(server.url, graphs, questions, max_tokens))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "data": str(data),
        "docs": str(docs),
        "questions": len(questions),
        "per_graph": {g: score_answers([a for a in answers if a.graph == g]) for g in graphs},
        "answers": [_answer_json(a) for a in answers],
    }


def _answer_json(a: Answered) -> dict[str, Any]:
    return {
        "graph": a.graph,
        "question": a.question.question,
        "answer_present": a.question.answer_present,
        "text": a.text[:1500],
        "citations": [{k: c.get(k) for k in ("n", "source", "verified", "score")} for c in a.citations],
    }


def format_report(report: dict[str, Any]) -> str:
    """One line per graph."""
    keys = ("markers_match_rate", "verified_precision", "cited_precision", "abstain_rate_absent",
            "abstain_rate_present")  # fmt: skip
    lines = [f"{'graph':<16}" + "".join(f"{k:>22}" for k in keys)]
    for graph, m in report["per_graph"].items():
        lines.append(f"{graph:<16}" + "".join(f"{'-' if m[k] is None else m[k]:>22}" for k in keys))
    return "\n".join(lines)


async def _ask_all(url: str, graphs: Sequence[str], questions: list[AnswerQuestion], max_tokens: int) -> list[Answered]:
    import httpx

    answers = []
    async with httpx.AsyncClient(base_url=url, timeout=900) as http:
        for graph in graphs:
            for q in questions:
                body = {"model": graph, "messages": [{"role": "user", "content": q.question}], "max_tokens": max_tokens}
                response = await http.post("/v1/chat/completions", json=body)
                if response.status_code != 200:
                    raise ChimeraError(f"{graph} on {q.question!r}: HTTP {response.status_code}: {response.text[:300]}")
                reply = response.json()
                text = reply["choices"][0]["message"]["content"] or ""
                citations = tuple((reply.get("chimera") or {}).get("citations") or ())
                answers.append(Answered(graph, q, text, citations))
    return answers
