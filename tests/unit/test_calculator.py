import pytest

from chimera.tools.base import ToolError
from chimera.tools.calculator import Calculator, evaluate


@pytest.mark.parametrize(
    ("expression", "expected"),
    [("17 * 23", 391), ("2^10", 1024), ("(1 + 2) * 3 - 4 / 2", 7), ("sqrt(16) + abs(-2)", 6), ("7 % 3", 1),
     ("-3 ** 2", -9), ("3.5 * 12", 42), ("12 ÷ 4 × 3", 9), ("round(pi, 3)", 3.142)],
)  # fmt: skip
def test_evaluates_arithmetic(expression: str, expected: float) -> None:
    assert evaluate(expression) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("expression", "message"),
    [("__import__('os').system('true')", "unsupported"), ("open('/etc/passwd')", "unsupported"),
     ("x + 1", "unsupported"), ("1 / 0", "division by zero"), ("2 ** 100000", "too large"),
     ("10 ** 999", "out of range"), ("1 +", "not an arithmetic"), ("", "empty"), ("True + 1", "booleans"),
     ("(1).__class__", "unsupported"), ("1" * 600, "longer than")],
)  # fmt: skip
def test_rejects_everything_but_arithmetic(expression: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        evaluate(expression)


async def test_tool_validates_arguments() -> None:
    calc = Calculator()
    assert await calc.call({"expression": "6*7"}) == "42"
    with pytest.raises(ToolError, match="invalid arguments"):
        await calc.call({"expr": "6*7"})
    assert calc.args_schema()["required"] == ["expression"]


@pytest.mark.parametrize(("expression", "value"), [("1,284 * 37", 47508), ("2,000,000 / 4", 500000.0), ("1,5", None)])
def test_thousands_separators(expression: str, value: float | None) -> None:
    if value is None:  # not a thousands group: still not an expression
        with pytest.raises(ToolError):
            evaluate(expression)
    else:
        assert evaluate(expression) == value
