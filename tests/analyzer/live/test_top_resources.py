"""``top`` with prices (cost columns, window totals) and the Machine panel's GPU line, driven through Pilot.

Records are constructed with known energy and token counts, so the USD strings are exact. This machine has no
GPU: the panel must say why in one line (the real NVML binding fails to find its library here).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from analyzer.live.top import rows
from analyzer.live.top.app import TopApp
from analyzer.live.top.widgets import ModelTable, RecentTable, details_text
from analyzer.protocol.record import InteractionRecord
from analyzer.resources.cost import ModelPrice, Prices
from analyzer.store.log import InteractionLog

pytestmark = pytest.mark.timeout(60)
SIZE = (160, 45)
PRICES = Prices(kwh=0.30, models={"llama3.2": ModelPrice(input=0.05, output=0.08)})


def record(key: str, model: str, *, energy_j: float | None, prompt: int | None, output: int) -> InteractionRecord:
    return InteractionRecord(
        id=key,
        source="proxy",
        started_at=time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() - 5)),
        method="POST",
        path="/api/generate",
        status=200,
        api="ollama",
        kind="generate",
        model=model,
        ttft_ms=80.0,
        total_ms=900.0,
        prompt_eval_count=prompt,
        eval_count=output,
        eval_tokens_per_s=40.0,
        energy_j=energy_j,
        energy_source=None if energy_j is None else "nvml_counter",
        complete=True,
    )


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "log"
    InteractionLog(directory).append_many(
        [
            # 720 J = 0.0002 kWh at $0.30 = $0.000060; 1000 in × $0.05 + 500 out × $0.08 per million = $0.000090
            record("known", "llama3.2:1b", energy_j=720.0, prompt=1000, output=500),
            # no energy sampled: energy unknown; 20 out × $0.08 per million = $0.0000016
            record("no-energy", "llama3.2:1b", energy_j=None, prompt=None, output=20),
            # a model without a price: API cost unknown; 3600 J = 0.001 kWh = $0.000300
            record("unpriced", "qwen3:0.6b", energy_j=3600.0, prompt=10, output=10),
        ]
    )
    return directory


async def until(pilot: Any, condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not reached")


def row(table: Any, key: str) -> dict[str, str]:
    cells = [str(cell) for cell in table.get_row(key)]
    return dict(zip(table.COLUMNS, cells, strict=True))


def test_recent_and_per_model_show_cost_and_the_window_totals(log_dir: Path) -> None:
    async def scenario() -> None:
        app = TopApp(
            live_path=None, log_dir=log_dir, ollama_url="http://127.0.0.1:9", poll_machine=False, prices=PRICES
        )
        async with app.run_test(size=SIZE) as pilot:
            recent, models = app.query_one(RecentTable), app.query_one(ModelTable)
            await until(pilot, lambda: recent.row_count == 3 and models.row_count == 2)
            assert tuple(recent.COLUMNS)[-3:] == ("Energy $", "API $", "Flags")
            assert row(recent, "known")["Energy $"] == "$0.000060"
            assert row(recent, "known")["API $"] == "$0.000090"
            assert (row(recent, "no-energy")["Energy $"], row(recent, "no-energy")["API $"]) == ("-", "$0.000002")
            assert (row(recent, "unpriced")["Energy $"], row(recent, "unpriced")["API $"]) == ("$0.000300", "-")
            llama = row(models, "model:llama3.2:1b")  # ModelStats.key: no model name can collide with "others"
            assert (llama["Reqs"], llama["Energy $"], llama["API $"]) == ("2", "$0.000060", "$0.000092")
            qwen = row(models, "model:qwen3:0.6b")
            assert (qwen["Energy $"], qwen["API $"]) == ("$0.000300", "-")
            details = details_text(app.state, "known", time.time()).plain
            assert "energy  720.0 J (nvml_counter)" in details and "cost energy  $0.000060" in details
            assert "cost API  $0.000090" in details
            # The window's totals (energy: 720 J + 3600 J; API: $0.000090 + $0.0000016) in the panel's title.
            assert models.border_title == "Per model — last 5 min — $0.000360 energy, $0.000092 API"
            await pilot.press("w")
            await until(pilot, lambda: str(models.border_title).startswith("Per model — last 1 hour — $0.000360"))
            # The model filter narrows the totals too.
            app.state.model_filter = "qwen"
            app.redraw()
            assert models.border_title == "Per model — last 1 hour — $0.000300 energy, - API"
            await pilot.press("q")

    asyncio.run(scenario())


def test_without_prices_there_are_no_cost_columns(log_dir: Path) -> None:
    async def scenario() -> None:
        app = TopApp(live_path=None, log_dir=log_dir, ollama_url="http://127.0.0.1:9", poll_machine=False)
        async with app.run_test(size=SIZE) as pilot:
            recent = app.query_one(RecentTable)
            await until(pilot, lambda: recent.row_count == 3)
            assert tuple(recent.COLUMNS) == rows.RECENT_COLUMNS
            assert tuple(app.query_one(ModelTable).COLUMNS) == rows.MODEL_COLUMNS
            assert "cost" not in str(app.query_one("#title").render())
            await pilot.press("q")

    asyncio.run(scenario())


def test_the_machine_panel_says_why_there_is_no_gpu(log_dir: Path) -> None:
    """The GPU samplers open in a worker; on this GPU-less machine the panel gets one short reason line."""

    async def scenario() -> list[str]:
        app = TopApp(live_path=None, log_dir=log_dir, ollama_url="http://127.0.0.1:9")
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.state.gpu.available is False)
            await until(pilot, lambda: "unavailable because" in str(app.query_one("#machine").render()))
            lines = str(app.query_one("#machine").render()).splitlines()
            await pilot.press("q")
        return lines

    lines = asyncio.run(scenario())
    gpu = [line for line in lines if "GPU" in line]
    assert len(gpu) == 1 and gpu[0].startswith("GPU: unavailable because "), lines
    assert "NVML" in gpu[0] and "(" not in gpu[0] and len(gpu[0]) <= 100, gpu
    assert any(line.startswith("Memory") for line in lines) and any(line.startswith("CPU") for line in lines)


def test_the_machine_panel_shows_gpu_utilisation_memory_and_power() -> None:
    """With a GPU sampler open (the real NvmlSampler over the resources tests' stand-in NVML: there is no GPU
    here), the worker reads it and the panel shows utilisation, memory and power on one line."""
    pytest.importorskip("pynvml")
    from analyzer.live.top.pollers import GpuReader
    from analyzer.resources.nvidia import NvmlSampler
    from analyzer.resources.registry import Opened, Target
    from tests.analyzer.resources.test_nvidia import FakeNvml

    nvml = FakeNvml()

    def opener(spec: str, target: Target, skips: tuple[str, ...]) -> Opened:
        sampler = NvmlSampler(nvml)
        sampler.open()
        return Opened(samplers=[sampler])

    async def scenario() -> str:
        app = TopApp(
            live_path=None, log_dir=Path("/nonexistent"), ollama_url="http://127.0.0.1:9", gpu=GpuReader(opener=opener)
        )
        async with app.run_test(size=SIZE) as pilot:
            machine = app.query_one("#machine")
            await until(pilot, lambda: "GPU " in str(machine.render()) and "W" in str(machine.render()))
            text = str(machine.render())
            await pilot.press("q")
        return text

    gpu = [line for line in asyncio.run(scenario()).splitlines() if "GPU" in line]
    # NVML's averaged utilisation (42 %: nothing buffered), 6 GB used, 250 W
    assert gpu == ["GPU    ███░░░░░ 42% · 6.0 GB · 250 W"], gpu
    assert nvml.shut  # the worker closed the sampler when the app quit
