"""A safe arithmetic evaluator: Python's own parser, a whitelist of AST nodes, bounded numbers, no `eval`."""

import ast
import math
import operator
import re
from collections.abc import Callable
from typing import ClassVar

from pydantic import BaseModel, Field

from chimera.tools.base import Tool, ToolError

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[float], float]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., float]] = {
    "sqrt": math.sqrt, "abs": abs, "round": round, "min": min, "max": max,
    "log": math.log, "log10": math.log10, "exp": math.exp,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "floor": math.floor, "ceil": math.ceil,
}  # fmt: skip
_CONSTANTS = {"pi": math.pi, "e": math.e}
_MAX_EXPONENT = 1000
_MAX_MAGNITUDE = 1e300
_MAX_LENGTH = 500


class CalculatorArgs(BaseModel):
    expression: str = Field(description="Arithmetic expression, e.g. `17 * 23` or `sqrt(2) / 3`.", max_length=500)


_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def evaluate(expression: str) -> float | int:
    """Evaluate an arithmetic expression.

    Raises:
        ToolError: syntax errors, names or operations outside the whitelist, division by zero, overflow.
    """
    text = expression.replace("^", "**").replace("×", "*").replace("÷", "/").strip()
    # "1,284 * 37": people (and models) write thousands separators; a calculator has no tuples to confuse them with.
    text = _THOUSANDS.sub("", text)
    if not text:
        raise ToolError("empty expression")
    if len(text) > _MAX_LENGTH:
        raise ToolError(f"expression longer than {_MAX_LENGTH} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise ToolError(f"not an arithmetic expression: {expression!r}") from e
    try:
        value = _eval(tree.body)
    except ZeroDivisionError as e:
        raise ToolError("division by zero") from e
    except (OverflowError, ValueError) as e:
        raise ToolError(f"cannot compute {expression!r}: {e}") from e
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _eval(node: ast.expr) -> float:
    match node:
        case ast.Constant(value=bool()):
            raise ToolError("booleans are not numbers here")
        case ast.Constant(value=int() | float() as value):
            return value
        case ast.Name(id=name) if name in _CONSTANTS:
            return _CONSTANTS[name]
        case ast.BinOp(left=left, op=op, right=right) if type(op) in _BINARY:
            a, b = _eval(left), _eval(right)
            if isinstance(op, ast.Pow) and abs(b) > _MAX_EXPONENT:
                raise ToolError(f"exponent {b} is too large")
            return _bounded(_BINARY[type(op)](a, b))
        case ast.UnaryOp(op=op, operand=operand) if type(op) in _UNARY:
            return _UNARY[type(op)](_eval(operand))
        case ast.Call(func=ast.Name(id=name), args=args, keywords=[]) if name in _FUNCTIONS:
            return _bounded(_FUNCTIONS[name](*(_eval(a) for a in args)))
    raise ToolError(f"unsupported element in expression: {ast.unparse(node)!r}")


def _bounded(value: float) -> float:
    if isinstance(value, complex) or abs(value) > _MAX_MAGNITUDE:
        raise ToolError("result out of range")
    return value


class Calculator(Tool):
    """Exact arithmetic for the agent, so a small model need not multiply in its head."""

    name: ClassVar[str] = "calculator"
    description: ClassVar[str] = "Evaluates an arithmetic expression (+ - * / ** %, sqrt, log, sin, pi…)."
    Args: ClassVar[type[BaseModel]] = CalculatorArgs

    async def run(self, args: CalculatorArgs) -> str:
        return str(evaluate(args.expression))
