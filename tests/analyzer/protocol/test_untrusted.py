"""The one way views show text from traffic: terminal escaping, table cells, spreadsheet-safe CSV cells."""

from __future__ import annotations

import csv
import io
import re

import pytest

from analyzer.protocol.untrusted import clip, csv_cell, csv_uncell, for_terminal, terminal_cell

# Anything a terminal acts on: C0 (but TAB/LF when kept), DEL, C1, bidi controls, separators, surrogates.
RAW_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff]")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("evil\x1b]0;OWNED\x07\x1b[2J", "evil\\x1b]0;OWNED\\x07\\x1b[2J"),
        ("a\nb\r\nc\td", "a\\nb\\r\\nc\\td"),
        ("\x1b]52;c;aGVsbG8=\x07", "\\x1b]52;c;aGVsbG8=\\x07"),
        ("nul\x00here", "nul\\x00here"),
        ("c1\x9b2J \x85", "c1\\x9b2J \\x85"),
        ("user\u202egnp.exe", "user\\u202egnp.exe"),
        ("iso\u2066x\u2069", "iso\\u2066x\\u2069"),
        ("line\u2028sep", "line\\u2028sep"),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
        ("llama3.2:1b café 日本 😀 [b]x[/b]", "llama3.2:1b café 日本 😀 [b]x[/b]"),
    ],
)
def test_for_terminal_shows_every_control_visibly(text: str, shown: str) -> None:
    assert for_terminal(text) == shown
    assert not RAW_CONTROL.search(for_terminal(text))
    for_terminal(text).encode("utf-8")  # printable: no lone surrogate left


def test_keep_newlines_keeps_lines_but_not_carriage_returns() -> None:
    assert for_terminal("a\nb\tc\rd\x1b", keep_newlines=True) == "a\nb\tc\\rd\\x1b"


def test_every_code_point_below_0x3000_is_safe() -> None:
    everything = "".join(chr(c) for c in range(0x3000))
    assert not RAW_CONTROL.search(for_terminal(everything))
    assert "\n" not in for_terminal(everything)


def test_cells_are_escaped_then_cut_with_an_ellipsis() -> None:
    assert clip("abcdef", 4) == "abc…" and clip("abc", 4) == "abc" and clip("abc", 0) == ""
    assert terminal_cell("\x1b" * 10, 6) == "\\x1b\\…"
    huge = "m" * 1_000_000
    assert terminal_cell(huge, 40) == "m" * 39 + "…"
    assert terminal_cell(42, 10) == "42"


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("+cmd", "'+cmd"),
        ("-cmd|' /C calc'!A0", "'-cmd|' /C calc'!A0"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-12.5", "-12.5"),
        ("+3e4", "+3e4"),
        ("-", "'-"),
        ("'=x", "''=x"),
        ("''=x", "'''=x"),
        ("'plain", "'plain"),
        ("plain = fine", "plain = fine"),
        ("", ""),
    ],
)
def test_csv_cells_follow_owasp_and_read_back_exactly(value: str, written: str) -> None:
    assert csv_cell(value) == written
    assert csv_uncell(written) == value


def test_csv_cell_passes_non_text() -> None:
    assert csv_cell(None) is None and csv_cell(-3) == -3 and csv_cell(1.5) == 1.5


def test_csv_round_trip_through_the_csv_module() -> None:
    values = ["=1+1", "-x", "'", "'=", "a\nb", "@", "\t", "-1", "é"]
    out = io.StringIO()
    csv.writer(out).writerow([csv_cell(v) for v in values])
    read = next(csv.reader(io.StringIO(out.getvalue())))
    assert [csv_uncell(cell) for cell in read] == values
    assert not any(cell.startswith(("=", "+", "@", "\t", "\r")) for cell in read)
