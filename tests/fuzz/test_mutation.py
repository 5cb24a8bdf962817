"""Damaged captures never hang or crash the analyzer: the regression corpus, then a fixed mutation batch.

Each case runs in a watched child process with a time budget proportional to its size, so a hang
fails the test (naming the file) instead of stalling the suite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mutate import Watched, budget_seconds, fuzz
from seeds import REGRESSIONS, seed_files


@pytest.fixture(scope="module")
def watched() -> Iterator[Watched]:
    child = Watched()
    yield child
    child.close()


REGRESSION_FILES = sorted(p for p in REGRESSIONS.iterdir() if p.is_file()) if REGRESSIONS.is_dir() else []


def test_regression_corpus_is_small() -> None:
    assert REGRESSION_FILES, "tests/data/fuzz-regressions/ holds every input that ever failed"
    assert all(p.stat().st_size <= 256 * 1024 for p in REGRESSION_FILES)


@pytest.mark.parametrize("path", REGRESSION_FILES, ids=lambda p: p.name)
def test_regression_input_is_analyzed(path: Path, watched: Watched) -> None:
    data = path.read_bytes()
    outcome, detail = watched.run(data, path.suffix, budget_seconds(len(data)))
    assert outcome == "ok", f"{path.name}: {outcome}: {detail}"


def test_seeds_analyze_whole(watched: Watched) -> None:
    for name, data in seed_files().items():
        assert watched.run(data, Path(name).suffix, budget_seconds(len(data))) == ("ok", ""), name


def test_mutation_batch(tmp_path: Path) -> None:
    report = fuzz(cases=400, seed=20261201, save_dir=tmp_path)
    assert report.cases == 400
    assert not report.failures, "\n".join(
        f"{kind}: {detail} (saved {saved})" for kind, detail, saved in report.failures
    )
