"""A small Cypher lexer: tells whether a query only reads, and whether it is one statement.

Pure functions, no database: `GraphStore.execute_read` asks `find_write_clause` before it runs anything. The lexer
follows the rules that both Neo4j and Kùzu/Ladybug apply: `'…'` and `"…"` strings with backslash escapes,
`` `…` `` quoted names with doubled backticks, `// …` line comments and non-nesting `/* … */` block comments.
Anything it cannot lex is refused, so a mismatch with the database's own lexer fails closed.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

# Clauses and commands that change data, schema, settings, files or the session. `DETACH` is both
# `DETACH DELETE` and Kùzu's database `DETACH`; `USE` switches graphs; `BEGIN`/`COMMIT`/`ROLLBACK` steer transactions.
WRITE_KEYWORDS: frozenset[str] = frozenset(
    {
        "CREATE",
        "MERGE",
        "DELETE",
        "DETACH",
        "SET",
        "REMOVE",
        "DROP",
        "ALTER",
        "RENAME",
        "COPY",
        "LOAD",
        "INSTALL",
        "UNINSTALL",
        "ATTACH",
        "USE",
        "FOREACH",
        "IMPORT",
        "EXPORT",
        "CHECKPOINT",
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "GRANT",
        "DENY",
        "REVOKE",
        "START",
        "STOP",
        "ENABLE",
        "TERMINATE",
        "SHOW",
    }
)

# `CALL` runs a procedure, and procedures may write (`db.create.*`, `apoc.*`, Kùzu's `CALL threads=4`), so only
# these known read-only ones pass (names compared lower-cased). `CALL { … }` subqueries pass: their body is checked.
READ_PROCEDURES: frozenset[str] = frozenset(
    {
        # Kùzu / Ladybug
        "show_tables",
        "table_info",
        "show_connection",
        "db_version",
        "current_setting",
        "show_functions",
        # Neo4j
        "db.labels",
        "db.relationshiptypes",
        "db.propertykeys",
        "db.schema.visualization",
        "db.schema.nodetypeproperties",
        "db.schema.reltypeproperties",
    }
)

TokenKind = Literal["word", "name", "string", "param", "number", "punct"]

_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"[^\W\d]\w*")
_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_PARAM = re.compile(r"\$(?:\w+|`(?:[^`]|``)*`)")


class CypherLexError(ValueError):
    """The text is not lexically valid Cypher (an unterminated string, name or comment)."""


@dataclass(frozen=True)
class Token:
    """One lexical token: its kind and its text (strings and quoted names keep their quotes)."""

    kind: TokenKind
    text: str


def _string_end(cypher: str, start: int) -> int:
    """Index just past the string literal that opens at `start`."""
    quote = cypher[start]
    i = start + 1
    while i < len(cypher):
        if cypher[i] == "\\":
            i += 2
        elif cypher[i] == quote:
            return i + 1
        else:
            i += 1
    raise CypherLexError("unterminated string literal")


def _name_end(cypher: str, start: int) -> int:
    """Index just past the backtick-quoted name that opens at `start` (a doubled backtick is an escape)."""
    i = start + 1
    while True:
        i = cypher.find("`", i)
        if i < 0:
            raise CypherLexError("unterminated quoted name")
        if cypher.startswith("``", i):
            i += 2
        else:
            return i + 1


def tokenize(cypher: str) -> Iterator[Token]:
    """Yield the tokens of `cypher`, skipping whitespace and comments.

    Raises:
        CypherLexError: on an unterminated string, quoted name or block comment.
    """
    i = 0
    while i < len(cypher):
        ch = cypher[i]
        if m := _SPACE.match(cypher, i):
            i = m.end()
        elif cypher.startswith("//", i):
            newline = cypher.find("\n", i)
            i = len(cypher) if newline < 0 else newline + 1
        elif cypher.startswith("/*", i):
            end = cypher.find("*/", i + 2)
            if end < 0:
                raise CypherLexError("unterminated block comment")
            i = end + 2
        elif ch in "'\"":
            end = _string_end(cypher, i)
            yield Token("string", cypher[i:end])
            i = end
        elif ch == "`":
            end = _name_end(cypher, i)
            yield Token("name", cypher[i:end])
            i = end
        elif m := _PARAM.match(cypher, i):
            yield Token("param", m.group())
            i = m.end()
        elif m := _WORD.match(cypher, i):
            yield Token("word", m.group())
            i = m.end()
        elif m := _NUMBER.match(cypher, i):
            yield Token("number", m.group())
            i = m.end()
        else:
            yield Token("punct", ch)
            i += 1


def _procedure_name(tokens: list[Token], start: int) -> str:
    """The dotted procedure name that begins at `tokens[start]`, lower-cased, backticks removed."""
    parts: list[str] = []
    i = start
    while i < len(tokens) and tokens[i].kind in ("word", "name"):
        text = tokens[i].text
        parts.append(text[1:-1].replace("``", "`") if tokens[i].kind == "name" else text)
        if i + 1 < len(tokens) and tokens[i + 1].text == ".":
            i += 2
        else:
            break
    return ".".join(parts).lower()


def _is_property_or_label(tokens: list[Token], i: int) -> bool:
    """True when `tokens[i]` follows `:` (a label or type) or `.` after a non-number (a property key)."""
    if i == 0 or tokens[i - 1].kind != "punct":
        return False
    if tokens[i - 1].text == ":":
        return True
    return tokens[i - 1].text == "." and i >= 2 and tokens[i - 2].kind != "number"


def _statement_count(tokens: list[Token]) -> int:
    """How many statements the tokens hold: `;` separates them, a trailing `;` adds none."""
    count = 0
    pending = False
    for token in tokens:
        if token.kind == "punct" and token.text == ";":
            count += pending
            pending = False
        else:
            pending = True
    return count + pending


def find_write_clause(cypher: str, *, read_procedures: frozenset[str] = READ_PROCEDURES) -> str | None:
    """Tell why `cypher` is not a single read-only statement, or return None when it is.

    Keywords are matched case-insensitively, outside string literals, comments and quoted names; a word right after
    `.` or `:` is a property, label or relationship type (`n.created_at`, `n.set`, `:Delete`), not a clause.

    Args:
        cypher: The query text.
        read_procedures: Procedure names (lower-case, dotted) that `CALL` may run.

    Returns:
        A short reason (`"write clause CREATE"`, `"procedure apoc.create.node"`, …), or None for a plain read.
    """
    try:
        tokens = list(tokenize(cypher))
    except CypherLexError as e:
        return f"cannot lex the query: {e}"
    if _statement_count(tokens) > 1:
        return "more than one statement"
    for i, token in enumerate(tokens):
        if token.kind != "word" or _is_property_or_label(tokens, i):
            continue
        keyword = token.text.upper()
        if keyword in WRITE_KEYWORDS:
            return f"write clause {keyword}"
        if keyword == "CALL":
            following = tokens[i + 1] if i + 1 < len(tokens) else None
            if following is not None and following.kind == "punct" and following.text in "{(":
                continue  # a subquery; its clauses are checked as the loop goes on
            name = _procedure_name(tokens, i + 1)
            if name not in read_procedures:
                return f"procedure {name or '?'} is not known to be read-only"
    return None


def is_single_statement(cypher: str) -> bool:
    """True when `cypher` lexes and holds exactly one statement (a trailing `;` allowed)."""
    try:
        return _statement_count(list(tokenize(cypher))) == 1
    except CypherLexError:
        return False
