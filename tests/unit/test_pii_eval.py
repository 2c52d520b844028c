"""`chimera eval pii`: precision, recall and code corruption on a labelled file, with the report's stable keys, and
the errors a malformed file gets (naming its line)."""

import json
from pathlib import Path

import pytest

from chimera.cli import main
from chimera.guardrails.errors import GuardDataError
from chimera.guardrails.pii_evaluation import load_pii_examples
from tests.unit.http_server import local_config

KEYS = {
    "n", "entities", "precision", "recall", "f1", "expected", "found", "leaked", "labels_not_configured",
    "code_items", "code_corrupted", "code_corrupted_ids", "stream_mismatches", "per_kind", "false_positives",
    "missed", "data",
}  # fmt: skip
ROWS = [
    {"id": "mail", "text": "Write to ada@example.org or call +1 212 736 5000.",
     "pii": [{"kind": "EMAIL_ADDRESS", "text": "ada@example.org"},
             {"kind": "PHONE_NUMBER", "text": "+1 212 736 5000"}]},
    {"id": "slice", "text": "Repeat exactly this line: xs = items[::2]", "code": True, "pii": []},
    {"id": "block", "text": "```\nip = '192.168.1.1'  # ada@example.org\n```", "code": True, "pii": []},
    {"id": "link", "text": "See https://docs.python.org/3/ for more.", "pii": [{"kind": "URL", "text": "https://docs.python.org/3/"}]},
]  # fmt: skip


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_eval_pii_scores_a_labelled_file_and_writes_its_json(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    local_config(tmp_path / "data")
    data = _write(tmp_path / "pii.jsonl", [json.dumps(row) for row in ROWS])
    out = tmp_path / "report" / "pii.json"
    assert main(["--config", str(tmp_path / "data" / "config.yaml"), "eval", "pii", "--data", str(data),
                 "--out", str(out)]) == 0  # fmt: skip
    report = json.loads(out.read_text())
    assert set(report) == KEYS
    assert (report["n"], report["expected"], report["labels_not_configured"]) == (4, 2, 1)  # URL is opt-in
    assert (report["precision"], report["recall"], report["leaked"]) == (1.0, 1.0, 0)
    assert (report["code_items"], report["code_corrupted"], report["stream_mismatches"]) == (2, 0, 0)
    assert set(report["per_kind"]) == {"EMAIL_ADDRESS", "PHONE_NUMBER"}
    assert set(report["per_kind"]["EMAIL_ADDRESS"]) == {"precision", "recall", "f1", "expected", "found"}


def test_the_packaged_labelled_set_loads() -> None:
    examples = load_pii_examples(Path(__file__).parents[1] / "data" / "pii_labelled.jsonl")
    assert len(examples) >= 60 and sum(e.code for e in examples) >= 30
    assert len({e.id for e in examples}) == len(examples)


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        (['{"text": "a", "pii": []}', "{not json"], r"bad\.jsonl:2: not JSON"),
        (['{"text": "a"}'], r"bad\.jsonl:1: missing `pii`"),
        (['{"pii": []}'], r"bad\.jsonl:1: missing `text`"),
        (["[1, 2]"], r"bad\.jsonl:1: expected a JSON object"),
        (['{"text": "a", "pii": [{"kind": "PERSON", "text": "a"}]}'], r"bad\.jsonl:1: kind 'PERSON'"),
        (['{"text": "a", "pii": [{"kind": "EMAIL_ADDRESS", "text": "b@c.de"}]}'], r"bad\.jsonl:1: .*does not occur"),
        (['{"text": "a", "pii": [], "code": "yes"}'], r"bad\.jsonl:1: .*`code` a boolean"),
        ([""], r"bad\.jsonl: no examples"),
    ],
)
def test_malformed_files_name_their_line(tmp_path: Path, lines: list[str], error: str) -> None:
    with pytest.raises(GuardDataError, match=error):
        load_pii_examples(_write(tmp_path / "bad.jsonl", lines))


def test_the_cli_reports_bad_input_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data").mkdir()
    local_config(tmp_path / "data")
    config = str(tmp_path / "data" / "config.yaml")
    assert main(["--config", config, "eval", "pii", "--data", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err
    bad = _write(tmp_path / "rows.jsonl", ['{"text": "a", "pii": []}', '{"text": "b"}'])
    assert main(["--config", config, "eval", "pii", "--data", str(bad)]) == 2
    assert "rows.jsonl:2: missing `pii`" in capsys.readouterr().err
