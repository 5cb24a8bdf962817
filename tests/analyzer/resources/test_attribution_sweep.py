"""The sweep that cuts a request's span into shares gives what the plain definition gives, slice by slice.

The plain definition (kept here as the reference): at each slice's middle, the target's tokens in the slice over
everyone's, or an equal split among the requests running when nobody generated a token.
"""

from __future__ import annotations

import itertools
import random

import pytest

from analyzer.resources.attribution import Activity, _slices


def reference_slices(target: Activity, others: list[Activity]) -> list[tuple[float, float, float]]:
    low, high = target.start, target.end
    active = [a for a in others if a.id != target.id and a.start < high and a.end > low]
    cuts = {low, high}
    for a in (target, *active):
        cuts.update(t for t in (a.start, a.end, a.token_start, a.token_end) if t is not None and low < t < high)
    slices = []
    for p, q in itertools.pairwise(sorted(cuts)):
        middle = (p + q) / 2
        running = [a for a in active if a.start <= middle < a.end]
        mine = target.tokens_between(p, q)
        everyone = mine + sum(a.tokens_between(p, q) for a in running)
        slices.append((p, q, mine / everyone if everyone > 0 else 1 / (1 + len(running))))
    return slices


def random_activity(rng: random.Random, name: str) -> Activity:
    start = rng.uniform(0, 10)
    end = start + rng.choice([0.0, rng.uniform(0.01, 5)])
    shape = rng.random()
    if shape < 0.2:  # no tokens (an embedding, an error)
        return Activity(name, start, end)
    token_start = rng.uniform(start, end)
    token_end = token_start if shape < 0.35 else rng.uniform(token_start, end)  # a point mass, or a window
    return Activity(name, start, end, float(rng.randint(1, 400)), token_start, token_end)


@pytest.mark.parametrize("seed", range(200))
def test_sweep_equals_the_definition(seed: int) -> None:
    rng = random.Random(seed)
    others = [random_activity(rng, f"r{i}") for i in range(rng.randint(0, 40))]
    target = random_activity(rng, "target")
    got, want = _slices(target, others), reference_slices(target, others)
    assert [(p, q) for p, q, _ in got] == [(p, q) for p, q, _ in want]
    assert [share for *_, share in got] == pytest.approx([share for *_, share in want], rel=1e-9, abs=1e-12)
