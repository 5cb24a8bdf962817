"""Cost, derived when records are read (prices change; records keep facts). No built-in prices.

A prices file (YAML)::

    kwh: 0.30                 # USD per kWh of electricity
    models:                   # API-equivalent prices, USD per million tokens
      llama3.1:8b: {input: 0.05, output: 0.08}
      qwen3: {input: 0.10, output: 0.30}

Either part may be left out. A model's price is looked up by its exact name, then without a ``:latest`` tag,
then by the name before the ``:`` (so ``qwen3`` prices ``qwen3:14b`` unless ``qwen3:14b`` has its own).

The API for ``logs``, ``report`` and ``top``::

    prices = load_prices(path)            # or prices_from_config(); PricesError names the file
    cost_columns(record, prices)          # {"cost_energy_usd": …, "cost_api_usd": …}, None where unknown
    add_costs(row_dict, record, prices)   # the same, added to a row

``cost_energy_usd`` is ``energy_j`` (joules) at the kWh price; ``cost_api_usd`` is ``prompt_eval_count`` input
tokens plus ``eval_count`` output tokens at the model's per-million prices.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from analyzer.protocol.record import InteractionRecord
from analyzer.store.digest import summary_model

COST_COLUMNS = ("cost_energy_usd", "cost_api_usd")
JOULES_PER_KWH = 3_600_000.0
CONFIG_ENV = "OLLAMA_WIRE_CONFIG"


class PricesError(Exception):
    """A prices file (or the config's ``prices``) is missing or malformed; the message names the file."""


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens."""

    input: float = 0.0
    output: float = 0.0


@dataclass(frozen=True)
class Prices:
    kwh: float | None = None
    models: dict[str, ModelPrice] = field(default_factory=dict)

    def for_model(self, model: str | None) -> ModelPrice | None:
        if not model:
            return None
        for name in (model, model.removesuffix(":latest"), model.split(":", 1)[0]):
            if name in self.models:
                return self.models[name]
        return None


def _price(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise PricesError(f"{where} must be a non-negative number, got {value!r}")
    return float(value)


def parse_prices(data: Any, name: str) -> Prices:
    """Prices from parsed YAML; ``name`` (the file) goes into every error message."""
    if not isinstance(data, dict):
        raise PricesError(f"{name}: expected a mapping with kwh and/or models")
    unknown = sorted(set(data) - {"kwh", "models"})
    if unknown:
        raise PricesError(f"{name}: unknown key {unknown[0]!r} (expected kwh, models)")
    kwh = None if data.get("kwh") is None else _price(data["kwh"], f"{name}: kwh")
    models: dict[str, ModelPrice] = {}
    raw_models = data.get("models") or {}
    if not isinstance(raw_models, dict):
        raise PricesError(f"{name}: models must be a mapping of model name to {{input, output}}")
    for model, entry in raw_models.items():
        where = f"{name}: models.{model}"
        if not isinstance(entry, dict) or not set(entry) <= {"input", "output"} or not entry:
            raise PricesError(f"{where} must be a mapping with input and/or output (USD per million tokens)")
        models[str(model)] = ModelPrice(
            input=_price(entry.get("input", 0), f"{where}.input"),
            output=_price(entry.get("output", 0), f"{where}.output"),
        )
    return Prices(kwh=kwh, models=models)


def load_prices(path: Path | str) -> Prices:
    """Read a prices file; any problem is a one-line PricesError naming it."""
    path = Path(path).expanduser()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PricesError(f"{path}: cannot read prices: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PricesError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse_prices(data, str(path))


def config_path() -> Path:
    """The ollama-wire config file: ``$OLLAMA_WIRE_CONFIG``, else ``~/.config/ollama-wire/config.yaml``."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "ollama-wire" / "config.yaml"


def prices_from_config(path: Path | None = None) -> Prices | None:
    """The config file's ``prices:`` (a prices file path, relative to the config, or the mapping); None if unset."""
    path = path or config_path()
    if not path.exists():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PricesError(f"{path}: cannot read config: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or data.get("prices") is None:
        return None
    prices = data["prices"]
    if isinstance(prices, str):
        return load_prices(path.parent / Path(prices).expanduser())
    return parse_prices(prices, f"{path}: prices")


def cost_columns(record: InteractionRecord, prices: Prices) -> dict[str, float | None]:
    """``cost_energy_usd`` and ``cost_api_usd`` of one record (None where the fact or the price is missing)."""
    energy = None
    if prices.kwh is not None and record.energy_j is not None:
        energy = round(record.energy_j / JOULES_PER_KWH * prices.kwh, 9)
    api = None
    price = prices.for_model(record.model)
    if price is not None and (record.prompt_eval_count is not None or record.eval_count is not None):
        tokens_in, tokens_out = record.prompt_eval_count or 0, record.eval_count or 0
        api = round((tokens_in * price.input + tokens_out * price.output) / 1_000_000, 9)
    return {"cost_energy_usd": energy, "cost_api_usd": api}


def add_costs(row: dict[str, Any], record: InteractionRecord, prices: Prices) -> dict[str, Any]:
    """``row`` with the two cost columns added (in place; returned for chaining)."""
    row.update(cost_columns(record, prices))
    return row


def total_costs(records: list[InteractionRecord], prices: Prices) -> dict[str, float | None]:
    """Sums of both cost columns over ``records`` (None when no record had that cost)."""
    totals: dict[str, float | None] = dict.fromkeys(COST_COLUMNS)
    for record in records:
        for name, value in cost_columns(record, prices).items():
            if value is not None:
                totals[name] = round((totals[name] or 0.0) + value, 9)
    return totals


def costs_per_model(records: list[InteractionRecord], prices: Prices) -> dict[str, dict[str, float | None]]:
    """:func:`total_costs` of each model's records, keyed by the model's name in a summary (``summary_model``)."""
    groups: dict[str, list[InteractionRecord]] = {}
    for record in records:
        groups.setdefault(summary_model(record.model), []).append(record)
    return {name: total_costs(group, prices) for name, group in groups.items()}
