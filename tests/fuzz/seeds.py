"""Seed captures for the fuzzers: ordinary Ollama traffic crafted with the pcap tests' generator, plus
every file of the committed capture corpus (``tests/data/captures/``) when it exists."""

from __future__ import annotations

import json
from pathlib import Path

from analyzer.pcap.segments import TcpSegment
from tests.support.frames import Conversation, chunked, frame_of, null
from tests.support.pcapfile import pcap_bytes, pcapng_bytes

TESTS = Path(__file__).resolve().parents[1]

CORPUS = TESTS / "data" / "captures"
REGRESSIONS = TESTS / "data" / "fuzz-regressions"
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")


def ndjson_lines(words: list[str], model: str = "m") -> list[bytes]:
    """Ollama /api/chat stream lines, one per word, then the done line."""
    lines = [
        json.dumps(
            {
                "model": model,
                "created_at": "2026-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": w},
                "done": False,
            }
        ).encode()
        + b"\n"
        for w in words
    ]
    done = {"model": model, "created_at": "2026-01-01T00:00:01Z", "message": {"role": "assistant", "content": ""},
            "done": True, "done_reason": "stop", "eval_count": len(words), "eval_duration": 1000000}  # fmt: skip
    return [*lines, json.dumps(done).encode() + b"\n"]


def sse_events(words: list[str]) -> list[bytes]:
    """OpenAI-compatible chat.completion.chunk events and [DONE]."""
    events = [
        b"data: "
        + json.dumps(
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}],
            }
        ).encode()
        + b"\n\n"
        for w in words
    ]
    return [*events, b"data: [DONE]\n\n"]


def request(path: str, body: dict, *, chunked_body: bool = False) -> bytes:
    raw = json.dumps(body).encode()
    if chunked_body:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        return head.encode() + chunked(raw[:10], raw[10:])
    head = f"POST {path} HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n"
    return head.encode() + raw


def response_head(content_type: str, *, length: int | None = None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n{framing}\r\n\r\n".encode()


def _request_segment(conv: Conversation, kind: str) -> TcpSegment:
    if kind == "ndjson":
        return conv.c(request("/api/chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
    if kind == "sse":
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        return conv.c(request("/v1/chat/completions", body, chunked_body=True))
    return conv.c(request("/api/generate", {"model": "m", "prompt": "hi", "stream": False}))


def _response_segments(conv: Conversation, kind: str, words: list[str]) -> list[TcpSegment]:
    segs: list[TcpSegment] = []
    if kind == "ndjson":
        segs.append(conv.s(response_head("application/x-ndjson")))
        segs += [conv.s(b"%x\r\n%s\r\n" % (len(line), line)) for line in ndjson_lines(words)]
        segs.append(conv.s(b"0\r\n\r\n"))
    elif kind == "sse":
        segs.append(conv.s(response_head("text/event-stream")))
        segs += [conv.s(b"%x\r\n%s\r\n" % (len(ev), ev)) for ev in sse_events(words)]
        segs.append(conv.s(b"0\r\n\r\n"))
    else:  # a non-streamed JSON body with Content-Length
        body = json.dumps({"model": "m", "response": " ".join(words), "done": True}).encode()
        segs.append(conv.s(response_head("application/json; charset=utf-8", length=len(body)) + body[:20]))
        segs.append(conv.s(body[20:]))
    return segs


def conversation_segments(kinds: list[str], *, client: str = "10.0.0.1", server: str = "10.0.0.2",
                          cport: int = 50000, pipelined: bool = False) -> list[TcpSegment]:  # fmt: skip
    """One keep-alive connection carrying one exchange per ``kinds`` entry, handshake and close."""
    conv = Conversation(client=client, server=server, cport=cport)
    words = ["Hello", " there", ",", " wire", "!"]
    segs = conv.handshake()
    if pipelined:  # every request first, then every response
        segs += [_request_segment(conv, kind) for kind in kinds]
        for kind in kinds:
            segs += _response_segments(conv, kind, words)
    else:
        for kind in kinds:
            segs.append(_request_segment(conv, kind))
            segs += _response_segments(conv, kind, words)
    return segs + conv.close()


def seed_files() -> dict[str, bytes]:
    """Name → capture bytes: crafted seeds in several link types and both file formats."""
    seeds: dict[str, bytes] = {}
    v4 = conversation_segments(["ndjson", "sse", "json"])
    v6 = conversation_segments(["sse", "ndjson"], client="fd00::1", server="fd00::2", cport=50001)
    piped = conversation_segments(["json", "ndjson", "json"], cport=50002, pipelined=True)
    for name, segs in (("v4", v4), ("v6", v6), ("pipelined", piped)):
        frames = [(s.ts, frame_of(s)) for s in segs]
        seeds[f"{name}-eth.pcap"] = pcap_bytes(frames)
        seeds[f"{name}-sll2.pcap"] = pcap_bytes([(s.ts, frame_of(s, "sll2")) for s in segs], 276)
        seeds[f"{name}-eth.pcapng"] = pcapng_bytes([(1, 6)], [(0, ts, f) for ts, f in frames])
    raw = [(s.ts, frame_of(s, "raw")) for s in v4]
    seeds["v4-raw-ns.pcap"] = pcap_bytes(raw, 101, nanos=True, big_endian=True)
    seeds["v4-null.pcap"] = pcap_bytes([(s.ts, null(frame_of(s, "raw"))) for s in v4], 0)
    return seeds


def corpus_files() -> dict[str, bytes]:
    """The committed capture corpus (when present), small files first; name → bytes."""
    if not CORPUS.is_dir():
        return {}
    files = sorted((p for p in CORPUS.rglob("*") if p.is_file() and p.suffix in CAPTURE_SUFFIXES),
                   key=lambda p: (p.stat().st_size, p.name))  # fmt: skip
    return {str(p.relative_to(CORPUS)): p.read_bytes() for p in files}


def all_seeds(max_bytes: int = 2 << 20) -> dict[str, bytes]:
    """Crafted seeds and corpus files up to ``max_bytes`` each."""
    seeds = seed_files()
    seeds.update({f"corpus/{k}": v for k, v in corpus_files().items() if len(v) <= max_bytes})
    return seeds
