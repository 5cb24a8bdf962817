"""Metric labels taken from traffic stay bounded: the first N values keep their series, the rest fold into
``other`` and are counted; label values are cut and escaped."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.request

import pytest
from test_export_mapping import chat

from analyzer.export import semconv as sc
from analyzer.export.labels import LABEL_VALUE_WIDTH, OTHER, LabelLimiter
from analyzer.export.mapping import measurements
from analyzer.export.observer import ExportObserver
from analyzer.recorder.process import free_port


def test_values_beyond_the_limit_fold_into_other_and_are_counted() -> None:
    limiter = LabelLimiter(limit=3)
    seen: list[tuple[int, str]] = []
    shown = [limiter.bound({sc.REQUEST_MODEL: f"m{n}", sc.OPERATION_NAME: "chat"}) for n in range(10)]
    assert [s[sc.REQUEST_MODEL] for s in shown] == ["m0", "m1", "m2", *[OTHER] * 7]
    assert all(s[sc.OPERATION_NAME] == "chat" for s in shown)  # not a traffic label: untouched
    assert limiter.bound({sc.REQUEST_MODEL: "m1"})[sc.REQUEST_MODEL] == "m1"  # a kept value stays kept
    assert limiter.folded == {sc.REQUEST_MODEL: 7} and limiter.distinct(sc.REQUEST_MODEL) == 3
    limiter.attach(lambda count, label: seen.append((count, label)))
    assert seen == [(7, sc.REQUEST_MODEL)]  # the folds so far, then each new one
    limiter.bound({sc.REQUEST_MODEL: "new", sc.ERROR_TYPE: "500"})
    assert seen[-1] == (1, sc.REQUEST_MODEL) and limiter.distinct(sc.ERROR_TYPE) == 1


def test_label_values_are_cut_and_escaped() -> None:
    limiter = LabelLimiter(limit=5)
    bounded = limiter.bound({sc.REQUEST_MODEL: "x" * 1_000_000, sc.ERROR_TYPE: "a\nb\x1b[2J"})
    assert len(str(bounded[sc.REQUEST_MODEL])) == LABEL_VALUE_WIDTH
    assert bounded[sc.ERROR_TYPE] == "a\\nb\\x1b[2J"


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LabelLimiter(limit=0)


def test_measurements_carry_the_bounded_model() -> None:
    limiter = LabelLimiter(limit=1)
    first = measurements(chat(id="a", model="kept"), limiter)
    second = measurements(chat(id="b", model="folded"), limiter)
    assert first and {m.attributes[sc.REQUEST_MODEL] for m in first} == {"kept"}
    assert second and {m.attributes[sc.REQUEST_MODEL] for m in second} == {OTHER}
    assert limiter.folded == {sc.REQUEST_MODEL: 1}  # once per interaction, not per measurement


def test_a_flood_of_model_names_keeps_the_prometheus_page_bounded() -> None:
    port = free_port()
    live = ExportObserver(prometheus_address=f"127.0.0.1:{port}", label_limit=20)
    try:
        for n in range(300):
            live.interaction_finished(chat(id=f"r{n}", model=f"flood-{n}\x1b]0;x\x07\n"))
        deadline = time.monotonic() + 20
        while live.exported < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        live.close(2.0)
    models = set(re.findall(r'gen_ai_request_model="((?:[^"\\]|\\.)*)"', page))
    assert len(models) == 21 and OTHER in models  # 20 kept + other
    assert 'ollama_export_label_values_folded_total{label="gen_ai.request.model"} 280.0' in page
    assert "\x1b" not in page and "\x07" not in page
    if shutil.which("promtool"):
        checked = subprocess.run(
            ["promtool", "check", "metrics"], input=page, capture_output=True, text=True, timeout=60
        )
        assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr
