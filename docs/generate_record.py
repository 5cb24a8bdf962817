"""Write the column tables of docs/record.md from the record's declaration (analyzer/protocol/record.py).

.venv/bin/python docs/generate_record.py          # rewrite the generated part of docs/record.md
.venv/bin/python docs/generate_record.py --check  # exit 1 if it is out of date (the tests do this)

Only the text between the two markers is generated; the prose around it is written by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

from analyzer.protocol.record import GROUPS, SCHEMA, VIEWS

RECORD_DOC = Path(__file__).resolve().parent / "record.md"
BEGIN = "<!-- columns: generated from analyzer/protocol/record.py by docs/generate_record.py; do not edit -->"
END = "<!-- end of generated columns -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_columns() -> str:
    """The generated part: one table per group, the columns in record order."""
    parts = [
        f"{len(SCHEMA)} columns, in this order in every output (the log's keys, CSV and SQLite columns,"
        " DataFrame columns); grouped here by what they are about. *views*: which readers besides the log,"
        " CSV, SQLite and DataFrames use the column — "
        + "; ".join(f"`{name}`: {text}" for name, text in VIEWS.items())
        + ".\n"
    ]
    for group, about in GROUPS.items():
        columns = [c for c in SCHEMA if c.group == group]
        if not columns:
            continue
        parts.append(f"\n### {group[0].upper()}{group[1:]}: {about}\n\n")
        parts.append("| column | type | unit | views | meaning |\n|---|---|---|---|---|\n")
        for c in columns:
            views = ", ".join(sorted(c.views))
            kind = c.type_word + ("" if c.value_type is list or not c.optional else ", or empty")
            parts.append(f"| `{c.name}` | {kind} | {_cell(c.unit)} | {views} | {_cell(c.meaning)} |\n")
    return "".join(parts)


def render(document: str) -> str:
    """``document`` with its generated part replaced."""
    start, end = document.find(BEGIN), document.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{RECORD_DOC}: the markers {BEGIN!r} and {END!r} are missing")
    return document[: start + len(BEGIN)] + "\n" + render_columns() + document[end:]


def main() -> int:
    current = RECORD_DOC.read_text(encoding="utf-8")
    text = render(current)
    if "--check" in sys.argv[1:]:
        if current != text:
            print(f"{RECORD_DOC} is out of date: run python docs/generate_record.py", file=sys.stderr)
            return 1
        return 0
    RECORD_DOC.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
