"""The response body readers one by one: what each reads, when it says the body ended, what it flags."""

from __future__ import annotations

import pytest

from analyzer.protocol.body_readers import (
    MAX_JSON_BODY_BYTES,
    JsonBodyReader,
    NdjsonReader,
    ObjectSink,
    SniffReader,
    SseReader,
    TextBodyReader,
    body_mode,
    reader_for,
)
from analyzer.protocol.endpoints import classify
from analyzer.protocol.response_content import ResponseContent
from analyzer.protocol.timing import GapStats


class Flags(list[str]):
    def __call__(self, flags: object) -> None:
        self.extend(flags)  # type: ignore[arg-type]


def sink(max_text: int = 1000) -> tuple[ObjectSink, Flags]:
    flags = Flags()
    return ObjectSink(ResponseContent(max_text_chars=max_text), GapStats(), flags), flags


@pytest.mark.parametrize(
    ("content_type", "mode", "reader"),
    [
        ("application/x-ndjson", "ndjson", NdjsonReader),
        ("text/event-stream; charset=utf-8", "sse", SseReader),
        ("application/json; charset=utf-8", "json", JsonBodyReader),
        ("text/plain; charset=utf-8", "text", TextBodyReader),
        (None, "text", TextBodyReader),
    ],
)
def test_content_type_picks_the_reader(content_type: str | None, mode: str, reader: type) -> None:
    assert body_mode(content_type) == mode
    assert type(reader_for(mode, sink()[0], status=200, endpoint=None)) is reader


def test_ndjson_lines_across_fragments_and_an_unterminated_last_line() -> None:
    s, flags = sink()
    reader = NdjsonReader(s)
    reader.feed(b'{"response":"a","done":false}\n{"respo', 1.0)
    reader.feed(b'nse":"b","done":false}\n\n{"response":"","done":true}', 2.0)
    assert (s.content.text, s.chunks, reader.ended()) == (["a", "b"], 2, False)
    reader.flush(3.0)
    assert (s.chunks, reader.ended(), flags, s.gaps.first_at, s.gaps.last_at) == (3, True, [], 1.0, 2.0)


def test_ndjson_bad_line_is_flagged_and_error_line_noted() -> None:
    s, flags = sink()
    reader = NdjsonReader(s)
    reader.feed(b'nope\n{"error":"boom"}\n', 1.0)
    assert (flags, s.chunks, s.had_error_line, s.content.error, reader.ended()) == (
        ["unparsable_line"],
        1,
        True,
        "boom",
        False,
    )


def test_sse_ends_at_done_marker_only() -> None:
    s, _ = sink()
    reader = SseReader(s)
    reader.feed(b'data: {"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}]}\n\n', 1.0)
    assert (s.content.text, s.content.done, reader.ended()) == (["x"], True, False)
    reader.feed(b"data: [DONE]\n\n", 2.0)
    assert (s.chunks, reader.ended(), reader.streaming) == (1, True, True)


def test_json_body_is_read_at_flush_and_openai_told_by_its_shape() -> None:
    s, flags = sink()
    reader = JsonBodyReader(s, 200, None)
    reader.feed(b'{"object":"chat.completion","choices":[{"index":0,"message":{"content":"hi"}}]}', 1.0)
    assert (s.content.text, reader.ended()) == ([], False)
    reader.flush(1.5)
    assert (s.content.text, s.content.detected_api, s.chunks, reader.ended(), flags) == (["hi"], "openai", 1, True, [])
    assert (s.gaps.first_at, reader.streaming, reader.oversized()) == (1.5, False, 0)


def test_json_body_errors() -> None:
    s, flags = sink()
    reader = JsonBodyReader(s, 502, classify("/api/generate"))
    reader.feed(b"<html>bad gateway</html>", 1.0)
    reader.flush(1.0)
    assert (s.content.error, reader.ended(), flags) == ("<html>bad gateway</html>", True, [])
    s, flags = sink()
    reader = JsonBodyReader(s, 200, classify("/api/generate"))
    reader.feed(b"{not json", 1.0)
    reader.flush(1.0)
    assert (s.content.error, reader.ended(), flags) == (None, False, ["unparsable_line"])


def test_json_body_over_its_cap_is_truncated_not_unparsable() -> None:
    s, flags = sink()
    reader = JsonBodyReader(s, 200, None)
    reader.feed(b" " * (MAX_JSON_BODY_BYTES + 1), 1.0)
    reader.flush(1.0)
    assert (flags, reader.ended()) == (["truncated_body"], False)


def test_text_body_is_kept_up_to_the_cap_and_complete_without_a_marker() -> None:
    s, flags = sink()
    reader = TextBodyReader(s, 200, 10)
    reader.feed(b"Ollama is running, really", 1.0)
    reader.flush(1.0)
    assert (s.content.text, flags, reader.ended(), reader.complete_without_end_marker) == (
        ["Ollama is "],
        ["truncated_body"],
        False,
        True,
    )


@pytest.mark.parametrize(
    ("fragments", "text", "chunks"),
    [
        # the cut first line is dropped quietly; the next line says NDJSON
        ([b'e":"x","done":false}\n{"response":"a","done":false}\n'], ["a"], 1),
        # one byte at a time: the decision waits for enough of the second line
        ([bytes([c]) for c in b'tail\n{"response":"b","done":true}\n'], ["b"], 1),
        # a first line that is whole is kept
        ([b'{"response":"w","done":false}\n{"response":"v","done":true}\n'], ["w", "v"], 2),
    ],
)
def test_sniff_picks_ndjson(fragments: list[bytes], text: list[str], chunks: int) -> None:
    s, flags = sink()
    reader = SniffReader(s)
    for fragment in fragments:
        reader.feed(fragment, 1.0)
    reader.flush(2.0)
    assert (s.content.text, s.chunks, flags) == (text, chunks, [])


def test_sniff_picks_sse_and_ends_at_done() -> None:
    s, flags = sink()
    reader = SniffReader(s)
    reader.feed(b'"}]}\n\ndata: {"choices":[{"index":0,"delta":{"content":"z"}}]}\n\ndata: [DONE]\n\n', 1.0)
    reader.flush(2.0)
    assert (s.content.text, reader.ended(), flags) == (["z"], True, [])


def test_sniff_decides_at_the_end_on_a_short_tail() -> None:
    s, _ = sink()
    reader = SniffReader(s)
    reader.feed(b'cut\n{"done":true}', 1.0)  # no second newline: decided (NDJSON) only at flush
    assert (reader.ended(), s.chunks) == (False, 0)
    reader.flush(2.0)
    assert (reader.ended(), s.chunks) == (True, 1)


def test_absurdly_deep_nesting_is_unparsable_not_a_crash() -> None:
    s, flags = sink()
    reader = NdjsonReader(s)
    reader.feed(b"[" * 100_000 + b"\n", 1.0)
    reader = JsonBodyReader(s, 200, None)
    reader.feed(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", 1.0)
    reader.flush(1.0)
    assert (flags, s.chunks) == (["unparsable_line", "unparsable_line"], 0)
