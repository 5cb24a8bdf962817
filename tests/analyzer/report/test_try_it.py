"""Findings that name a server setting or a request option carry the replay + compare commands that try it."""

from __future__ import annotations

import shlex

from analyzer.report.finding import WARNING, Finding
from analyzer.report.try_it import named_settings, try_commands


def finding(suggestion: str, code: str = "some_code") -> Finding:
    return Finding(
        code,
        WARNING,
        "performance",
        "t",
        "d",
        suggestion,
        ["a"],
        "2026-12-01T10:00:05.000Z",
        "2026-12-01T10:02:00.000Z",
    )


def test_settings_and_options_are_read_from_the_suggestion() -> None:
    assert named_settings("Raise OLLAMA_NUM_PARALLEL (costs memory per slot)") == (["OLLAMA_NUM_PARALLEL"], [])
    assert named_settings('pass keep_alive (e.g. "30m") or set OLLAMA_KEEP_ALIVE') == (
        ["OLLAMA_KEEP_ALIVE"],
        ["keep_alive"],
    )
    assert named_settings("Raise num_predict (native options) or max_tokens (OpenAI API)") == ([], ["num_predict"])
    assert named_settings("Check the server log at these times") == ([], [])
    assert named_settings("the word num_ctxs and OLLAMA_NUM_PARALLELISM are not settings") == ([], [])


def test_a_server_setting_is_tried_on_a_second_server() -> None:
    serve, replay, compare = try_commands(finding("Raise OLLAMA_NUM_PARALLEL.", "queueing"), ["logs/my log"])
    assert serve == "OLLAMA_HOST=127.0.0.1:11435 OLLAMA_NUM_PARALLEL=4 ollama serve"
    assert shlex.split(replay) == [
        "ollama-wire", "replay", "logs/my log", "--since", "2026-12-01T09:59:05.000Z", "--until",
        "2026-12-01T10:02:00.001Z", "--target", "http://127.0.0.1:11435", "--label", "try-queueing",
    ]  # fmt: skip
    assert shlex.split(compare) == ["ollama-wire", "compare", "logs/my log", "label:try-queueing"]


def test_the_value_follows_the_suggestion() -> None:
    oom = "Use a smaller model, lower num_ctx, unload other models (OLLAMA_MAX_LOADED_MODELS=1), or free memory."
    assert try_commands(finding(oom), ["x"])[0] == "OLLAMA_HOST=127.0.0.1:11435 OLLAMA_MAX_LOADED_MODELS=1 ollama serve"
    lower = "Lower OLLAMA_NUM_PARALLEL when the KV cache for all slots no longer fits."
    assert "OLLAMA_NUM_PARALLEL=1 " in try_commands(finding(lower), ["x"])[0]
    raise_it = "Raise OLLAMA_NUM_PARALLEL (costs memory per slot), or lower the load."
    assert "OLLAMA_NUM_PARALLEL=4 " in try_commands(finding(raise_it), ["x"])[0]
    shorter = "Reduce num_ctx for this model."
    assert "--option num_ctx=2048" in try_commands(finding(shorter), ["x"])[0]


def test_a_request_option_is_tried_with_replay_option() -> None:
    replay, compare = try_commands(finding("Raise num_predict or max_tokens.", "length_cutoff"), ["x.jsonl"])
    words = shlex.split(replay)
    assert words[words.index("--option") + 1] == "num_predict=1024"
    assert words[words.index("--target") + 1] == "http://127.0.0.1:11434"
    assert compare == "ollama-wire compare x.jsonl label:try-length-cutoff"
    assert try_commands(finding("Read the server log."), ["x"]) == []
