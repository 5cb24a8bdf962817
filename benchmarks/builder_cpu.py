"""CPU cost of the one builder per stream chunk, this checkout against another one, side by side.

The builder runs on the proxy's traffic path for every chunk. This feeds the same streams — a native chat of
500 content tokens, an Anthropic Messages stream and an OpenAI Responses stream of 500 thinking + 500 answer
tokens — into ``InteractionBuilder`` of two source trees (this checkout and ``--base``, e.g. a worktree of
``main``), each in its own child process, alternating A/B/A/B, and prints the process CPU time per chunk
(user + system: on a shared machine the steadier figure), the spread of identical runs and the ratio.

Run: ``python benchmarks/builder_cpu.py --base /path/to/other/checkout [--rounds 4]``. A stream the base tree
cannot read (an API it does not know) is reported as such.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs inside a child process with PYTHONPATH = one tree: prints {stream: [cpu seconds per chunk, ...]}.
CHILD = r"""
import json, sys, time
from analyzer.protocol.interaction import InteractionBuilder

def native():
    lines = [{"model": "m:1", "created_at": "2024-08-01T12:00:00.123456789Z",
              "message": {"role": "assistant", "content": f" tok{i}"}, "done": False} for i in range(500)]
    lines.append({"model": "m:1", "created_at": "2024-08-01T12:00:01Z", "message": {"role": "assistant", "content": ""},
                  "done": True, "done_reason": "stop", "total_duration": 1, "eval_count": 500})
    return "/api/chat", "application/x-ndjson", [json.dumps(o, separators=(",", ":")).encode() + b"\n" for o in lines]

def sse(events):
    return [f"event: {e['type']}\ndata: {json.dumps(e, separators=(',', ':'))}\n\n".encode() for e in events]

def anthropic():
    d = lambda i, delta: {"type": "content_block_delta", "index": i, "delta": delta}
    events = [{"type": "message_start", "message": {"id": "msg_1", "model": "m:1", "usage": {"input_tokens": 9}}},
              {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}]
    events += [d(0, {"type": "thinking_delta", "thinking": f" t{i}"}) for i in range(500)]
    events += [{"type": "content_block_stop", "index": 0},
               {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}]
    events += [d(1, {"type": "text_delta", "text": f" a{i}"}) for i in range(500)]
    events += [{"type": "content_block_stop", "index": 1},
               {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                "usage": {"input_tokens": 9, "output_tokens": 1000}},
               {"type": "message_stop"}]
    return "/v1/messages", "text/event-stream", sse(events)

def responses():
    e = lambda kind, **data: {"type": kind, "sequence_number": 0, **data}
    events = [e("response.created", response={"id": "r", "object": "response", "status": "in_progress"})]
    events += [e("response.reasoning_summary_text.delta", item_id="rs", output_index=0, summary_index=0,
                 delta=f" t{i}") for i in range(500)]
    events += [e("response.output_text.delta", item_id="m", output_index=1, content_index=0, delta=f" a{i}",
                 logprobs=[]) for i in range(500)]
    events.append(e("response.completed", response={"id": "r", "object": "response", "status": "completed",
                                                    "usage": {"input_tokens": 9, "output_tokens": 1000}}))
    return "/v1/responses", "text/event-stream", sse(events)

def cpu_per_chunk(path, ctype, chunks, streams=30):
    body = b'{"model":"m:1","stream":true,"messages":[{"role":"user","content":"hi"}],"max_tokens":9}'
    start = time.process_time()
    for _ in range(streams):
        b = InteractionBuilder(source="proxy")
        b.request_started(0.0, "POST", path, {"Content-Type": "application/json"})
        b.request_body(body, 0.0)
        b.response_started(0.1, 200, {"Content-Type": ctype})
        for i, c in enumerate(chunks):
            b.response_body(c, 0.1 + i * 0.001)
        record = b.finish()
    return (time.process_time() - start) / (streams * len(chunks)), record

out = {}
for name, make in (("native chat", native), ("anthropic messages", anthropic), ("openai responses", responses)):
    path, ctype, chunks = make()
    cpu_per_chunk(path, ctype, chunks, 3)  # warm-up
    runs = [cpu_per_chunk(path, ctype, chunks) for _ in range(5)]
    readable = bool(runs[-1][1].response_text)
    out[name] = [r[0] for r in runs] if readable else None
print(json.dumps(out))
"""


def run_tree(tree: Path) -> dict[str, list[float] | None]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=tree,
        env={"PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="the other checkout (a source tree)")
    parser.add_argument("--rounds", type=int, default=4, help="A/B rounds")
    args = parser.parse_args()
    samples: dict[str, dict[str, list[float] | None]] = {"this": {}, "base": {}}
    for _ in range(args.rounds):
        for label, tree in (("base", args.base.resolve()), ("this", ROOT)):
            for stream, values in run_tree(tree).items():
                if values is None:
                    samples[label][stream] = None
                elif samples[label].get(stream, []) is not None:
                    samples[label].setdefault(stream, []).extend(values)  # type: ignore[union-attr]
    print(f"{'stream':<20} {'base µs/chunk':>22} {'this µs/chunk':>22} {'this/base':>10}")
    for stream, values in samples["this"].items():
        base = samples["base"].get(stream)
        this_med = statistics.median(values or [0]) * 1e6
        this_txt = f"{this_med:.2f} ({min(values or [0]) * 1e6:.2f}–{max(values or [0]) * 1e6:.2f})"
        if not base:
            print(f"{stream:<20} {'(base cannot read it)':>22} {this_txt:>22} {'–':>10}")
            continue
        base_med = statistics.median(base) * 1e6
        base_txt = f"{base_med:.2f} ({min(base) * 1e6:.2f}–{max(base) * 1e6:.2f})"
        print(f"{stream:<20} {base_txt:>22} {this_txt:>22} {this_med / base_med:>9.2f}×")


if __name__ == "__main__":
    main()
