"""YARA rules on text an agent sends to a tool: code for `run_python`, Cypher for `graph_query`.

Only tool-bound text is scanned: NeMo's injection rules fire on ordinary prose (its SQL rule matches "the
European Union's": a UNION and a quote). The code, SQL, template and XSS rules are NeMo's own
(`nemoguardrails/library/injection_detection/yara_rules`); the Cypher rule is ours (`config/yara/cypher.yara`).
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chimera.guardrails.errors import RailsConfigError

OUR_RULES = Path(__file__).parent / "config" / "yara"
#: Which rule sets guard which tool unless the config says otherwise.
DEFAULT_TOOL_RULES: dict[str, tuple[str, ...]] = {"run_python": ("code",), "graph_query": ("cypher",)}


def _rule_files(names: set[str]) -> dict[str, str]:
    import importlib.util

    spec = importlib.util.find_spec("nemoguardrails")
    if spec is None or not spec.submodule_search_locations:
        raise RailsConfigError("nemoguardrails is not installed")
    nemo = Path(next(iter(spec.submodule_search_locations))) / "library" / "injection_detection" / "yara_rules"
    files = {}
    for name in sorted(names):
        path = OUR_RULES / f"{name}.yara" if (OUR_RULES / f"{name}.yara").exists() else nemo / f"{name}.yara"
        if not path.exists():
            raise RailsConfigError(f"no YARA rule set named {name!r} (looked in {OUR_RULES} and {nemo})")
        files[name] = str(path)
    return files


class ToolInputScanner:
    """Compiled YARA rules per tool; `scan(tool, text)` names the rules that matched (empty: clean)."""

    def __init__(self, tool_rules: Mapping[str, tuple[str, ...]] = DEFAULT_TOOL_RULES) -> None:
        import yara

        self.tool_rules = dict(tool_rules)
        names = {name for rules in self.tool_rules.values() for name in rules}
        try:
            self._rules: Any = yara.compile(filepaths=_rule_files(names)) if names else None
        except yara.Error as e:
            raise RailsConfigError(f"the YARA rules do not compile: {e}") from e

    def scan(self, tool_name: str, text: str) -> list[str]:
        """Names (`set:rule`) of the rules of `tool_name`'s sets that match `text`."""
        wanted = self.tool_rules.get(tool_name, ())
        if not wanted or self._rules is None:
            return []
        return [f"{m.namespace}:{m.rule}" for m in self._rules.match(data=text.encode("utf-8", "replace"))
                if m.namespace in wanted]  # fmt: skip
