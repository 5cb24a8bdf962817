"""LineSplitter and SseSplitter: exact units for every fragmentation, bounded buffering of over-long units."""

from __future__ import annotations

import pytest

from analyzer.protocol.framing import LineSplitter, SseSplitter

NDJSON = b'{"a":1}\n{"b":"\xc3\xa9"}\r\n{"c":3}\n'


def split_every(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 2, 3, 7, len(NDJSON)])
def test_lines_are_the_same_for_every_fragmentation(size: int) -> None:
    splitter = LineSplitter(1000)
    lines = [line for piece in split_every(NDJSON, size) for line in splitter.feed(piece)]
    assert lines == [b'{"a":1}', b'{"b":"\xc3\xa9"}\r', b'{"c":3}']
    assert splitter.flush() is None and splitter.oversized == 0


def test_unterminated_last_line_comes_from_flush_once() -> None:
    splitter = LineSplitter(100)
    assert splitter.feed(b"one\ntw") == [b"one"]
    assert splitter.feed(b"o") == []
    assert splitter.flush() == b"two"
    assert splitter.flush() is None


def test_over_long_line_split_across_fragments_is_skipped_to_its_newline() -> None:
    splitter = LineSplitter(4)
    assert splitter.feed(b"ok\n12345") == [b"ok"]
    assert splitter.feed(b"678") == []
    assert splitter.feed(b"9\nnext\n") == [b"next"]
    assert splitter.oversized == 1 and splitter.flush() is None


def test_over_long_line_inside_one_fragment_is_skipped_and_counted() -> None:
    splitter = LineSplitter(4, oversized_marker=b"<dropped>")
    assert splitter.feed(b"a\n0123456789\nb\n") == [b"a", b"<dropped>", b"b"]
    assert splitter.oversized == 1


def test_line_of_exactly_the_limit_is_kept() -> None:
    splitter = LineSplitter(4)
    assert splitter.feed(b"1234\n12345\n") == [b"1234"]
    assert splitter.oversized == 1


SSE = (
    b": a comment\r\n"
    b"event: message\r\n"
    b'data: {"x":1}\r\n'
    b"\r\n"
    b"id: 7\n"
    b"data:first\n"
    b"data: second\n"
    b"retry: 10\n"
    b"\n"
    b"data: [DONE]\n"
    b"\n"
)


@pytest.mark.parametrize("size", [1, 2, 5, len(SSE)])
def test_sse_events_are_their_joined_data_lines(size: int) -> None:
    splitter = SseSplitter(1000)
    events = [event for piece in split_every(SSE, size) for event in splitter.feed(piece)]
    assert events == [b'{"x":1}', b"first\nsecond", b"[DONE]"]
    assert splitter.flush() == [] and splitter.oversized_total == 0


def test_sse_unterminated_last_event_comes_from_flush() -> None:
    splitter = SseSplitter(1000)
    assert splitter.feed(b"data: a\n\ndata: b") == [b"a"]
    assert splitter.flush() == [b"b"]


def test_sse_over_long_data_drops_the_whole_event_only() -> None:
    splitter = SseSplitter(12)  # each line fits; together the event's data (18 bytes) does not
    assert splitter.feed(b"data: 123456\ndata: 123456\ndata: 123456\n\ndata: ok\n\n") == [b"ok"]
    assert (splitter.oversized, splitter.oversized_total) == (1, 1)


def test_sse_over_long_line_drops_its_event_and_keeps_the_next() -> None:
    splitter = SseSplitter(8)
    assert splitter.feed(b"data: a\ndata: " + b"x" * 50 + b"\ndata: b\n\ndata: c\n\n") == [b"c"]
    assert splitter.oversized_total == 1
