"""Which requests ran at the same time as which: the overlaps the scheduler findings and the headline reason about.

Ollama runs each model in its own runner with its own slots (``OLLAMA_NUM_PARALLEL``), so only requests of the
*same* model can wait for each other's slots or decode in one batch; another model being busy is no reason to wait
for a slot (it can be one to wait for a load: that shows in ``load_duration``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from analyzer.report.derive import Request

# Two answers decoded together (one batch) when their generation intervals share at least this part of the
# shorter one: a few ms of overlap at the edges is the hand-over from one request to the next, not batching.
DECODE_OVERLAP_SHARE = 0.25
# A request that got the slot another one freed starts generating after that one's last byte; the proxy's and the
# client's clocks may put the two this close (s) the other way round.
SLOT_HANDOVER_S = 0.05


def by_model(requests: Iterable[Request]) -> dict[str, list[Request]]:
    """Local inference requests per model, oldest first (a remote model's time is not this machine's)."""
    grouped: dict[str, list[Request]] = defaultdict(list)
    for r in sorted(requests, key=lambda r: r.start):
        if r.inference and not r.served_remotely:
            grouped[r.model].append(r)
    return grouped


def behind_same_model(requests: Sequence[Request]) -> set[int]:
    """The requests (by ``id()``) that arrived while an earlier request of the same model was still running."""
    found: set[int] = set()
    for rows in by_model(requests).values():
        latest_end = float("-inf")
        for r in rows:
            if r.start < latest_end:
                found.add(id(r))
            latest_end = max(latest_end, r.end)
    return found


def waited_for_a_slot(requests: Sequence[Request]) -> set[int]:
    """The requests (by ``id()``) that began generating only after another request of the same model, running while
    they waited, had finished (a slot freed) — whichever arrived first: after a load, the requests that waited for it
    race for the slot. One that decoded alongside the others had a slot: whatever it waited for (the runner's
    batches), it was not a free slot. Without a known generation start, arriving behind a running one is taken as
    waiting."""
    found: set[int] = set()
    for rows in by_model(requests).values():
        running: list[Request] = []
        for i, r in enumerate(rows):
            running = [o for o in running if o.end > r.start]
            start = r.decode_start
            if start is None:
                waited = bool(running)
            else:
                waited = any(o.end <= start + SLOT_HANDOVER_S for o in running)
                for o in rows[i + 1 :]:  # arrived after it, yet served (and done) before it began
                    if waited or o.start >= start:
                        break
                    waited = o.end <= start + SLOT_HANDOVER_S
            if waited:
                found.add(id(r))
            running.append(r)
    return found


def decode_interval(r: Request) -> tuple[float, float] | None:
    start = r.decode_start
    if start is None or r.end <= start:
        return None
    return start, r.end


def decoded_together(a: Request, b: Request) -> bool:
    """Both answers were generated at the same time for a good part of the shorter one (one batch)."""
    ia, ib = decode_interval(a), decode_interval(b)
    if ia is None or ib is None:
        return False
    shared = min(ia[1], ib[1]) - max(ia[0], ib[0])
    shorter = min(ia[1] - ia[0], ib[1] - ib[0])
    return shared > 0 and shared >= DECODE_OVERLAP_SHARE * shorter


def decoding_pairs(rows: Sequence[Request]) -> list[tuple[Request, Request]]:
    """Pairs of one model's requests (earlier-decoding first) whose answers were generated together; a sweep over
    the generation intervals, so months of sequential traffic cost one pass."""
    spans = sorted(((span, r) for r in rows if (span := decode_interval(r)) is not None), key=lambda x: x[0][0])
    pairs: list[tuple[Request, Request]] = []
    for i, ((_, end), r) in enumerate(spans):
        for (start, _), other in spans[i + 1 :]:
            if start >= end:
                break
            if decoded_together(r, other):
                pairs.append((r, other))
    return pairs


def concurrent_decoders(rows: Sequence[Request]) -> dict[int, int]:
    """For each request of one model (by ``id()``): how many of that model's answers were being generated with it,
    itself included (1 = decoded alone)."""
    out = {id(r): 1 for r in rows}
    for a, b in decoding_pairs(rows):
        out[id(a)] += 1
        out[id(b)] += 1
    return out
