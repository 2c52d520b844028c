"""Where Markdown puts code: fenced blocks and inline code spans, found as text arrives.

The PII rails never mask code, so they need to know which characters of a text are code. `CodeScanner` reads the
text in pieces (a whole text, or a streamed answer delta by delta) and gives back each settled piece twice: as it
is, and as a *prose view* of the same length where every code character is a line break. A line break ends every
entity the recognizers know (`streaming.py`), so analysing the view finds exactly the PII outside code, at the
text's own offsets.

The Markdown read here is a subset of CommonMark's, decided line by line so that a stream never waits past the end
of a line:

- A fence is a line of three or more backticks or tildes after any indentation (lists indent their blocks); a
  backtick fence's info string holds no backtick. The block, fence lines included, runs to a closing line of the
  same character at least as long, or to the end of the text. Indented blocks without fences are not code here.
- A code span is a run of N backticks closed by the next run of exactly N backticks on the same line (CommonMark
  lets a span cross a line break inside a paragraph; here such a span is prose). A run with no closer is prose. A
  backslash before a backtick makes it literal.

Settling is exact: the same pieces come out whatever the text's split into deltas, because a line's code follows
from the fence state at its start and its own characters. With `hold_cap`, a stream never holds back more than
that many characters: past it, an undecided backtick run (an unclosed span, or a fence line not yet ended) is taken
as literal text, which may then be masked as prose.
"""

import functools
import re
from typing import Literal

_FENCE_OPEN = re.compile(r"[ \t]*(`{3,}|~{3,})")
_MAYBE_FENCE = re.compile(r"[ \t]*(`*|~*)")
_BACKTICKS = re.compile(r"`+")

LineKind = Literal["undecided", "prose", "fence_open", "in_fence"]


def prose_view(text: str) -> str:
    """`text` with every code character replaced by a line break (same length, same offsets)."""
    scanner = CodeScanner()
    view = scanner.feed(text)[1] + scanner.finish()[1]
    return view


class CodeScanner:
    """Reads a text in pieces and settles, for each character, whether it is code.

    Args:
        hold_cap: most characters held back undecided (None: no cap, for a text read whole).
    """

    def __init__(self, *, hold_cap: int | None = None) -> None:
        if hold_cap is not None and hold_cap < 1:
            raise ValueError("hold_cap must be positive")
        self.hold_cap = hold_cap
        self._fence: tuple[str, int] | None = None  # the block open at the start of the current line
        self._line = ""  # the current line so far
        self._settled = 0  # characters of `_line` already given out
        self._kind: LineKind = "undecided"
        self._out_raw: list[str] = []
        self._out_view: list[str] = []

    @property
    def held(self) -> int:
        """Characters read but not yet settled."""
        return len(self._line) - self._settled

    def feed(self, text: str) -> tuple[str, str]:
        """Read more text; returns the newly settled text and its prose view."""
        for piece in re.split(r"(?<=\n)", text):
            if not piece:
                continue
            self._line += piece
            if piece.endswith("\n"):
                self._settle(complete=True)
                self._end_line()
            else:
                self._settle(complete=False)
                while self.hold_cap is not None and self.held > self.hold_cap:
                    self._give_up_one()
                    self._settle(complete=False)
        return self._take()

    def finish(self) -> tuple[str, str]:
        """The text ended: settle what is held (an unclosed fence stays code, an unclosed span is prose)."""
        self._settle(complete=True)
        self._end_line()
        return self._take()

    def _take(self) -> tuple[str, str]:
        raw, view = "".join(self._out_raw), "".join(self._out_view)
        self._out_raw, self._out_view = [], []
        return raw, view

    def _emit(self, end: int, code: bool) -> None:
        if end > self._settled:
            piece = self._line[self._settled : end]
            self._out_raw.append(piece)
            self._out_view.append("\n" * len(piece) if code else piece)
            self._settled = end

    def _end_line(self) -> None:
        if self._kind == "fence_open":
            run = _FENCE_OPEN.match(self._line)
            assert run is not None  # the kind says the line opens a fence
            self._fence = (run.group(1)[0], len(run.group(1)))
        elif self._kind == "in_fence" and self._fence is not None:
            char, length = self._fence
            if re.fullmatch(rf"[ \t]*{re.escape(char)}{{{length},}}[ \t]*\r?\n?", self._line):
                self._fence = None
        self._line, self._settled = "", 0
        self._kind = "in_fence" if self._fence is not None else "undecided"

    def _settle(self, *, complete: bool) -> None:
        if self._kind == "undecided":
            self._kind = _line_kind(self._line, complete)
        if self._kind in ("in_fence", "fence_open"):
            self._emit(len(self._line), code=True)
        elif self._kind == "prose":
            self._settle_prose(complete)

    def _settle_prose(self, complete: bool) -> None:
        """Give out the line up to its first backtick run whose span is still undecided."""
        line = self._line
        at = self._settled
        while True:
            opener = _next_run(line, at)
            if opener is None:
                self._emit(len(line), code=False)
                return
            start, end = opener
            if end == len(line) and not complete:  # the run may still grow
                self._emit(start, code=False)
                return
            closer = _closer(line, end, end - start, complete)
            if closer == "undecided":
                self._emit(start, code=False)
                return
            if closer is None:  # no closer on the line: the run is literal text
                self._emit(end, code=False)
                at = end
                continue
            self._emit(start, code=False)
            self._emit(closer, code=True)
            at = closer

    def _give_up_one(self) -> None:
        """Past the cap: take the held line's first undecided part as literal prose."""
        if self._kind == "undecided":
            self._kind = "prose"
            return
        opener = _next_run(self._line, self._settled)
        end = opener[1] if opener is not None else len(self._line)
        self._emit(end, code=False)


def _line_kind(line: str, complete: bool) -> LineKind:
    """What a line outside a block is, or "undecided" while later characters could still change it."""
    run = _FENCE_OPEN.match(line)
    if run is None:
        may_become_fence = not complete and _MAYBE_FENCE.fullmatch(line) is not None
        return "undecided" if may_become_fence else "prose"
    if run.end() == len(line) and not complete:
        return "undecided"  # the run may grow, or a backtick may follow
    if run.group(1)[0] == "~":
        return "fence_open"
    if "`" in line[run.end() :]:
        return "prose"  # "```code``` and more" is a span, not a fence
    return "fence_open" if complete else "undecided"


def _next_run(line: str, at: int) -> tuple[int, int] | None:
    """The next backtick run at or after `at` that is not escaped by a backslash."""
    for match in _BACKTICKS.finditer(line, at):
        start = match.start()
        if start > 0 and line[start - 1] == "\\":
            start += 1  # the escaped backtick is literal; the rest of the run still counts
            if start == match.end():
                continue
        return start, match.end()
    return None


def _closer(line: str, at: int, length: int, complete: bool) -> int | Literal["undecided"] | None:
    """End of the first run of exactly `length` backticks after `at`; None if the line has none."""
    match = _run_of(length).search(line, at)
    if match is None:
        return None if complete else "undecided"  # a run at the end may still become one
    if match.end() == len(line) and not complete:
        return "undecided"  # it may still grow
    return match.end()


@functools.lru_cache(maxsize=64)
def _run_of(length: int) -> re.Pattern[str]:
    """A run of exactly `length` backticks (searched in C: a long line of unmatched runs stays linear per run)."""
    return re.compile(rf"(?<!`)`{{{length}}}(?!`)")
