"""What keeping the request body (``request_body``, for ``ollama-wire replay``) costs in log size.

Each workload's records are built by the real ``InteractionBuilder`` and written as log lines twice — as they are,
and with the body columns emptied — and the sizes compared. Deterministic: sizes, not times.

    .venv/bin/python benchmarks/request_body_cost.py
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from analyzer.protocol.interaction import InteractionBuilder
from analyzer.protocol.record import InteractionRecord

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "data" / "captures"
BODY_COLUMNS = ("request_body", "request_content_type", "request_content_encoding")


def line_bytes(record: dict[str, object], keep_body: bool) -> int:
    data = dict(record) if keep_body else {**record, **dict.fromkeys(BODY_COLUMNS)}
    return len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()) + 1


def chat_record(messages: list[dict[str, str]], answer: str) -> InteractionRecord:
    builder = InteractionBuilder(source="proxy")
    builder.request_started(1.0, "POST", "/api/chat", {"Content-Type": "application/json"})
    builder.request_body(json.dumps({"model": "llama3.2:1b", "messages": messages}).encode(), 1.0)
    builder.response_started(1.1, 200, {"Content-Type": "application/x-ndjson"})
    for start in range(0, len(answer), 5):
        piece = {"model": "llama3.2:1b", "message": {"role": "assistant", "content": answer[start : start + 5]}}
        builder.response_body((json.dumps({**piece, "done": False}) + "\n").encode(), 1.2)
    final = {"model": "llama3.2:1b", "message": {"role": "assistant", "content": ""}, "done": True}
    builder.response_body((json.dumps({**final, "done_reason": "stop"}) + "\n").encode(), 1.3)
    return builder.finish(1.3)


def conversation(turns: int) -> Iterator[dict[str, object]]:
    """A chat that sends its whole history each turn: 200-character questions, 600-character answers."""
    messages = [{"role": "system", "content": "You are a helpful assistant. " * 4}]
    for turn in range(turns):
        messages.append({"role": "user", "content": f"Question {turn} about the topic, in detail please. " * 4})
        answer = "word " * 120
        yield chat_record(list(messages), answer).to_dict()
        messages.append({"role": "assistant", "content": answer})


def workloads() -> dict[str, list[dict[str, object]]]:
    corpus = [
        json.loads(line) for path in sorted(CORPUS.glob("*.records.jsonl")) for line in path.open() if line.strip()
    ]
    return {
        f"capture corpus ({len(corpus)} records: short prompts, long answers)": corpus,
        "one chat turn (200-char question, 600-char answer)": list(conversation(1)),
        "a 10-turn chat sending its history each turn": list(conversation(10)),
    }


def main() -> None:
    print(f"{'workload':62} {'without':>10} {'with':>10} {'growth':>7}")
    for name, records in workloads().items():
        without = sum(line_bytes(r, False) for r in records)
        with_body = sum(line_bytes(r, True) for r in records)
        print(f"{name:62} {without:>10,} {with_body:>10,} {(with_body / without - 1) * 100:>6.0f}%")


if __name__ == "__main__":
    main()
