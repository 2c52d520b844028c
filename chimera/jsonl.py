"""Reading labelled JSONL files (eval data): each non-blank line one JSON object, every failure naming `file:line`."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from chimera.errors import ChimeraError


def json_objects(path: Path, error: type[ChimeraError] = ChimeraError) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of `path`, read as it goes (a corpus may be large).

    Lines end at "\n" only (file iteration; `str.splitlines` would also break at U+2028, which JSON strings may
    hold raw).

    Raises:
        error: the file cannot be read, or a line is not a JSON object (`file:line: …`).
    """
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise error(f"{path}:{number}: not JSON ({e.msg})") from e
                if not isinstance(record, dict):
                    raise error(f"{path}:{number}: expected a JSON object")
                yield number, record
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{path}: cannot read: {e}") from e
