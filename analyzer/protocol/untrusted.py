"""Showing text that came from traffic: one home for how every view neutralises it.

Whoever can reach Ollama chooses the model name, the prompt, the path, the error text. The record keeps those
bytes exactly (JSONL escapes them); only *views* neutralise them, each with the one function that fits:

* :func:`for_terminal` — a terminal line or cell: C0/C1 control characters (ESC, BEL, CR, NUL, …), DEL, bidi
  overrides and isolates, line/paragraph separators and lone surrogates become visible escapes (``\\x1b``,
  ``\\n``, ``\\u202e``), so text can neither drive the terminal (retitle it, clear it, write the clipboard with
  OSC 52) nor start a new output line (forge a log line), nor reorder what is shown around it.
  ``keep_newlines=True`` keeps ``\\n`` and TAB for multi-line blocks (``analyze-pcap --responses``).
* :func:`clip` / :func:`terminal_cell` — a table cell: escaped, then cut to a width with ``…``.
* :func:`csv_cell` / :func:`csv_uncell` — a CSV cell a spreadsheet opens: the OWASP rule (a leading ``=``,
  ``+``, ``-`` that is not a number, ``@``, TAB or CR gets a ``'`` prefix), and its exact inverse for reading
  back CSV this project wrote.

Backslashes are left as they are (prompts full of code stay readable), so a literal ``\\x1b`` typed by a client
looks like an escaped ESC: harmless, since nothing is executed either way.
"""

from __future__ import annotations

import re

ELLIPSIS = "…"

# C0 controls, DEL, C1 controls; bidi embeddings/overrides/isolates and marks; line and paragraph separators;
# lone surrogates (never in a record, but a view must not crash on them); BOM/zero-width no-break space.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ufeff\ud800-\udfff]")
_UNSAFE_BLOCK = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ufeff\ud800-\udfff]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def for_terminal(text: object, *, keep_newlines: bool = False) -> str:
    """``text`` (any value; ``str()`` of non-strings) with every character that could act on a terminal shown
    as a visible escape. One line unless ``keep_newlines`` (then ``\\n`` and TAB pass, CR does not)."""
    value = text if isinstance(text, str) else str(text)
    return (_UNSAFE_BLOCK if keep_newlines else _UNSAFE).sub(_escape, value)


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the last one an ellipsis when anything was cut."""
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: width - 1] + ELLIPSIS


def terminal_cell(value: object, width: int) -> str:
    """A table cell: escaped for the terminal, then cut to ``width`` with an ellipsis.

    Only a prefix of a huge value is escaped (a 1 MB model name costs what ``width`` characters cost).
    """
    text = value if isinstance(value, str) else str(value)
    return clip(for_terminal(text[: width + 1]), width)


# The OWASP rule for CSV injection: these first characters make a spreadsheet read the cell as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
CSV_GUARD = "'"


def _needs_guard(text: str) -> bool:
    if not text.startswith(_FORMULA_START):
        return False
    return not (text[0] in "+-" and _NUMBER.fullmatch(text))


def csv_cell(value: object) -> object:
    """A CSV cell safe to open in a spreadsheet: text a spreadsheet would run as a formula gets a ``'`` prefix;
    so does text that already starts with ``'`` after such a character would be stripped (see
    :func:`csv_uncell`), so reading back is exact. Numbers, ``None`` and plain text pass unchanged."""
    if not isinstance(value, str) or not value:
        return value
    if _needs_guard(value) or (value.startswith(CSV_GUARD) and _needs_guard(value[1:].lstrip(CSV_GUARD))):
        return CSV_GUARD + value
    return value


def csv_uncell(text: str) -> str:
    """The exact text :func:`csv_cell` was given (the guard removed); other text unchanged."""
    if text.startswith(CSV_GUARD) and _needs_guard(text[1:].lstrip(CSV_GUARD)):
        return text[1:]
    return text


__all__ = ["ELLIPSIS", "clip", "csv_cell", "csv_uncell", "for_terminal", "terminal_cell"]
