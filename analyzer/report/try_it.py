"""The commands that try a finding's suggestion on the user's own traffic: replay the finding's period against a
server with the change (or with the request option set), then compare — ``ollama-wire replay`` + ``compare``.

Applied to findings after they are found (one function, whatever rule made them): a finding whose suggestion
names a server setting (``OLLAMA_NUM_PARALLEL``…) or a request option (``num_ctx``…) gains ``try_commands``.
The period is from TRY_LEAD_S before the finding's first evidence request (so the requests it queued behind are
sent too) to just after its last. The target is a placeholder the user points at the changed server.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from datetime import datetime, timedelta

from analyzer.report.finding import Finding

TRY_LEAD_S = 60.0
CANDIDATE_URL = "http://127.0.0.1:11435"  # where the commands start the server with the change
SERVER_URL = "http://127.0.0.1:11434"  # Ollama's own address: request options are tried on the same server

# Server settings a suggestion may name, and a value to try (the user edits it): the suggestion's own value when it
# gives one (``OLLAMA_MAX_LOADED_MODELS=1``), LOWER_VALUES when the words just before it say lower/reduce, else these.
SERVER_SETTINGS: dict[str, str] = {
    "OLLAMA_NUM_PARALLEL": "4",
    "OLLAMA_KEEP_ALIVE": "30m",
    "OLLAMA_MAX_LOADED_MODELS": "3",
    "OLLAMA_CONTEXT_LENGTH": "8192",
    "OLLAMA_MAX_QUEUE": "1024",
    "OLLAMA_FLASH_ATTENTION": "1",
    "OLLAMA_KV_CACHE_TYPE": "q8_0",
}
# Request options a suggestion may name, and a value to try (``--option NAME=VALUE``); OpenAI's max_tokens is
# num_predict to the replay.
REQUEST_OPTIONS: dict[str, tuple[str, str]] = {
    "num_ctx": ("num_ctx", "8192"),
    "num_predict": ("num_predict", "1024"),
    "max_tokens": ("num_predict", "1024"),
    "keep_alive": ("keep_alive", '"30m"'),
}
LOWER_VALUES: dict[str, str] = {
    "OLLAMA_NUM_PARALLEL": "1",
    "OLLAMA_MAX_LOADED_MODELS": "1",
    "OLLAMA_CONTEXT_LENGTH": "2048",
    "num_ctx": "2048",
    "num_predict": "256",
}
_WORD = re.compile(r"\b(OLLAMA_[A-Z_]+|[a-z_]+)\b(?:=([\w.:-]+))?")
_LOWER = re.compile(r"\b(lower|reduce|decrease|smaller)\b[^.;:]*$", re.IGNORECASE)


def named_settings(text: str) -> tuple[list[str], list[str]]:
    """The server settings and the request options ``text`` names, in the order it names them."""
    servers: list[str] = []
    options: list[str] = []
    for match in _WORD.finditer(text):
        word = match.group(1)
        if word in SERVER_SETTINGS and word not in servers:
            servers.append(word)
        elif word in REQUEST_OPTIONS and REQUEST_OPTIONS[word][0] not in options:
            options.append(REQUEST_OPTIONS[word][0])
    return servers, options


def value_to_try(text: str, name: str, default: str) -> str:
    """The value ``text`` suggests for ``name``: the one it gives (``NAME=VALUE``), a lower one when the words
    before it (same clause) say lower/reduce, else ``default``."""
    for match in _WORD.finditer(text):
        if match.group(1) == name or REQUEST_OPTIONS.get(match.group(1), ("",))[0] == name:
            if match.group(2):
                return match.group(2).rstrip(".,")
            if _LOWER.search(text[max(0, match.start() - 60) : match.start()]) and name in LOWER_VALUES:
                return LOWER_VALUES[name]
            return default
    return default


def _moment(iso_time: str, shift_s: float) -> str:
    when = datetime.fromisoformat(iso_time.replace("Z", "+00:00")) + timedelta(seconds=shift_s)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def try_commands(finding: Finding, sources: Sequence[str]) -> list[str]:
    """The shell commands that test ``finding``'s suggestion on the recorded traffic (empty when it names no
    server setting or request option): the first setting it names on a second server, else the first option."""
    servers, options = named_settings(finding.suggestion)
    if not servers and not options:
        return []
    where = " ".join(shlex.quote(s) for s in sources)
    window = f"--since {_moment(finding.first, -TRY_LEAD_S)} --until {_moment(finding.last, 0.001)}"
    label = f"try-{finding.code.replace('_', '-')}"
    commands = []
    if servers:
        setting = servers[0]
        port = CANDIDATE_URL.rsplit(":", 1)[1]
        value = value_to_try(finding.suggestion, setting, SERVER_SETTINGS[setting])
        commands.append(f"OLLAMA_HOST=127.0.0.1:{port} {setting}={shlex.quote(value)} ollama serve")
        commands.append(f"ollama-wire replay {where} {window} --target {CANDIDATE_URL} --label {label}")
    else:
        name = options[0]
        value = value_to_try(finding.suggestion, name, next(v for n, v in REQUEST_OPTIONS.values() if n == name))
        option = shlex.quote(f"{name}={value}")
        commands.append(f"ollama-wire replay {where} {window} --target {SERVER_URL} --option {option} --label {label}")
    baseline = shlex.quote(sources[0]) if sources else ""  # compare takes one baseline: the first source
    commands.append(f"ollama-wire compare {baseline} label:{label}")
    return commands


def add_try_commands(findings: Sequence[Finding], sources: Sequence[str]) -> None:
    """Give every finding whose suggestion names a setting or an option its ``try_commands``."""
    for finding in findings:
        finding.try_commands = try_commands(finding, sources)
