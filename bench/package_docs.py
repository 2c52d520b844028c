"""Write the READMEs of installed third-party packages (their PyPI long descriptions) to a folder: documents
nobody on the team wrote, for `chimera eval answers` (questions in bench/data/answer_questions.jsonl).

    python bench/package_docs.py --out /tmp/package-docs
    chimera eval answers --data bench/data/answer_questions.jsonl --docs /tmp/package-docs

Offline: the text comes from the packages' metadata in this environment, never from the network.
"""

import argparse
import sys
from importlib.metadata import PackageNotFoundError, metadata
from pathlib import Path

PACKAGES = {"httpx": "md", "redis": "md", "cachetools": "rst"}  # the questions name these files as sources


def write_docs(out: Path) -> list[Path]:
    """One file per package (`<name>.<md|rst>`) in `out`; a package not installed is an error naming it."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, suffix in PACKAGES.items():
        try:
            text = metadata(name).get_payload()  # type: ignore[attr-defined]
        except PackageNotFoundError as e:
            raise SystemExit(f"package {name} is not installed; run `make models` first") from e
        if not text or not text.strip():
            raise SystemExit(f"package {name} has no long description in its metadata")
        path = out / f"{name}.{suffix}"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the documents to")
    args = parser.parse_args()
    for path in write_docs(args.out):
        print(f"{path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
