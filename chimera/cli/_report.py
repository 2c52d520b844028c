"""Printing an evaluation or training report: its table on stdout, its JSON in a file when asked."""

import json
from pathlib import Path
from typing import Any


def print_report(text: str, report: dict[str, Any], path: Path | None) -> None:
    """Print an evaluation's table, and write its JSON to `path` when given."""
    print(text)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2))
        print(f"\nwritten to {path}")
