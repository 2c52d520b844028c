"""Markers by folder: tests/unit → unit, tests/integration → integration, tests/gpu → gpu."""

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for marker in ("unit", "integration", "gpu"):
            if f"tests/{marker}/" in str(item.path).replace("\\", "/"):
                item.add_marker(getattr(pytest.mark, marker))
