"""The recorder: a mitmproxy addon that records every Ollama interaction without slowing the stream.

mitmproxy loads it through a tiny script (``addons/ollama_log.py`` in a checkout, or
``analyzer/recorder/mitmproxy_script.py`` from an installed package, printed by ``ollama-wire addon-path``).

Each response is streamed through a ``flow.response.stream`` callable that returns every fragment
unchanged the moment it arrives; the callable only timestamps the bytes and feeds the shared
protocol core (``analyzer.protocol.interaction``). One JSON line per finished interaction goes to
``<ollama_log_dir>/YYYY-MM-DD.jsonl`` and one summary line to the console.

The feeds (resource sampling, the live feed, OTLP/Prometheus export) do not run here: the recorder starts them
in one companion process (companion_link.py) and hands it each record, which the companion enriches and writes.
With every feed off there is no companion and the recorder's own writer writes the log.

Which flows count: in reverse mode everything behind the proxy is the upstream Ollama; in every other mode
(regular, upstream, transparent, ...) only requests to port 11434 (Ollama's default), unless ``ollama_hosts``
names the hosts. A bad or unknown ``ollama_*`` setting stops mitmdump with one error line per setting.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions, http, optmanager
from mitmproxy.proxy.mode_specs import ProxyMode, ReverseMode

from analyzer.companion import feeds
from analyzer.companion.feeds import FEED_OPTION_NAMES, FEED_OPTIONS, FeedSettings
from analyzer.protocol.endpoints import OLLAMA_PORT, classify
from analyzer.protocol.interaction import DEFAULT_MAX_TEXT_CHARS, InteractionBuilder
from analyzer.protocol.record import (
    FLAG_CLIENT_ABORTED,
    FLAG_NO_RESPONSE,
    FLAG_RECORDER_ERROR,
    FLAG_SHUTDOWN,
    FLAG_UPSTREAM_FAILED,
    InteractionRecord,
    format_address,
)
from analyzer.protocol.redact import REDACT_IMAGES, REDACTION_MODES
from analyzer.protocol.untrusted import terminal_cell
from analyzer.recorder.arrival import ArrivalClock
from analyzer.recorder.companion_link import NO_COMPANION, CompanionLink
from analyzer.store.log import DEFAULT_LOG_DIR, InteractionLog
from analyzer.store.summary import one_line
from analyzer.store.writer import RecordWriter

logger = logging.getLogger(__name__)


def _shown_path(flow: http.HTTPFlow) -> str:
    """The request path for a console warning: the client chose it, so escaped and cut."""
    return terminal_cell(flow.request.path, 200)


CLIENT_DISCONNECTED = "Client disconnected."
OPTION_NAMES = (
    "ollama_log_dir",
    "ollama_redact",
    "ollama_hosts",
    "ollama_extra_paths",
    "ollama_max_text",
    "ollama_console",
)
ALL_OPTION_NAMES = (*OPTION_NAMES, *FEED_OPTION_NAMES)
TICK_S = 0.1  # how often the progress of interactions in flight goes to the companion (coalesced)
# A change to one of these while running restarts the companion with the new settings.
COMPANION_OPTIONS = frozenset({*FEED_OPTION_NAMES, "ollama_log_dir", "ollama_redact", "mode"})


def _shown(value: object) -> str:
    """A setting's value as the user wrote it (``--set name=value``)."""
    return ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def option_problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for any ``ollama_*`` option (the recorder's and the feeds'), or None."""
    if name in FEED_OPTION_NAMES:
        return feeds.option_problem(name, value)
    if name == "ollama_log_dir":
        directory = Path(value).expanduser()
        if directory.exists() and not directory.is_dir():
            return f"{directory} exists and is not a directory"
    elif name == "ollama_redact" and value not in REDACTION_MODES:
        return f"not one of {', '.join(REDACTION_MODES)}"
    elif name == "ollama_max_text" and value <= 0:
        return "must be a positive number of characters"
    elif name == "ollama_hosts":
        for host in value:
            if not host or "/" in host:
                return f"{host!r} is not a host or host:port"
    elif name == "ollama_extra_paths":
        for prefix in value:
            if not prefix.startswith("/"):
                return f"{prefix!r} is not a path prefix (starts with /)"
    return None


def apply_deferred(options: optmanager.OptManager) -> list[str]:
    """Apply the ``ollama_*`` settings mitmproxy held back until the script declared them; return the bad ones.

    ``--set`` values for options no addon has declared yet are parked in ``options.deferred`` and parsed
    after ``load()`` returns. A value that does not parse then aborts the script load with no message at
    all (the proxy runs and records nothing), and an unknown name stays parked for ever. Taking our names
    out here turns each bad one into a message instead. (``options.deferred`` is not underscored and mitmproxy's
    own addon manager uses it; its public ``process_deferred()`` raises on the first bad value without naming
    it and leaves unknown names parked silently, so there is no public way to say which setting is wrong.)
    """
    deferred = getattr(options, "deferred", None)
    if not isinstance(deferred, dict):
        return []
    problems = []
    for name in [n for n in deferred if n.startswith("ollama_")]:
        value = deferred.pop(name)
        strings = getattr(value, "val", None)  # --set gives unparsed strings, config.yaml typed values
        shown = _shown(strings if isinstance(strings, list) else value)
        if name not in options:
            declared: set[str] = options.keys()
            known = sorted(n for n in declared if n.startswith("ollama_"))
            close = difflib.get_close_matches(name, known, 1, 0.8)
            hint = f"did you mean {close[0]}?" if close else f"options: {', '.join(known)}"
            problems.append(f"unknown option {name}={shown} ({hint})")
            continue
        try:
            if isinstance(strings, list):
                options.set(*([f"{name}={s}" for s in strings] or [name]))
            else:
                options.update(**{name: value})
        except (exceptions.OptionsError, TypeError, ValueError) as exc:
            reason = str(exc)
            problems.append(reason if reason.startswith(f"{name}=") else f"{name}={shown}: {reason}")
            continue
        value = getattr(options, name)
        problem = option_problem(name, value)
        if problem:
            options.update(**{name: options.default(name)})  # so configure() does not fail a second time
            problems.append(f"{name}={shown}: {problem}")
    return problems


_BODY_HEADERS = ("content-type", "content-encoding")


def _body_headers(headers: Any) -> dict[str, str]:
    """The response headers the builder reads (how to parse the body), without copying the whole multidict."""
    return {name: value for name in _BODY_HEADERS if (value := headers.get(name)) is not None}


def upstream_server(modes: Sequence[str]) -> tuple[str, int]:
    """The Ollama server the samplers watch: the first reverse-mode upstream, else Ollama's default address."""
    for spec in modes:
        try:
            mode = ProxyMode.parse(spec)
        except ValueError:
            continue
        if isinstance(mode, ReverseMode):
            host, port = mode.address
            return host, port
    return "127.0.0.1", OLLAMA_PORT


def _address(address: tuple | None) -> str:
    if not address:
        return ""
    return format_address(str(address[0]), int(address[1]))


class OllamaLog:
    """The addon. Per flow it keeps one InteractionBuilder, bounded by ``ollama_max_text``."""

    def __init__(self) -> None:
        self.builders: dict[str, InteractionBuilder] = {}
        self.start_bounds: dict[str, float | None] = {}  # flow id -> how sure its started_at is (ms; None: unknown)
        self.log = InteractionLog(DEFAULT_LOG_DIR)
        self.writer = RecordWriter(self.log)  # writes off the event loop; holds records through log outages
        self.arrival = ArrivalClock()  # when a connection's first request really began to arrive
        self.problems: list[str] = []
        self.link: CompanionLink | None = None  # the feeds' companion (None: every feed off, or not running yet)
        self._running = False
        self._ticker: asyncio.Task | None = None

    @property
    def recorded(self) -> int:
        """Records written to the log so far."""
        return self.writer.written

    def load(self, loader) -> None:
        loader.add_option(
            "ollama_log_dir",
            str,
            str(DEFAULT_LOG_DIR),
            "Directory of the interaction log: one append-only JSONL file per UTC day.",
        )
        loader.add_option(
            "ollama_redact",
            str,
            REDACT_IMAGES,
            "What to keep of prompts and responses: none (keep all), images (replace images by a hash), "
            "hash (replace every text by its sha256), drop (remove prompts and responses).",
            choices=REDACTION_MODES,
        )
        loader.add_option(
            "ollama_hosts",
            Sequence[str],
            [],
            "Hosts (host or host:port) whose traffic counts as Ollama. In reverse mode these are matched "
            "against the upstream (e.g. 127.0.0.1:11434), not the listen address. Empty: in reverse mode "
            "everything behind the proxy; in regular, upstream and other modes only port 11434, Ollama's "
            "default. Either way the path must be an Ollama or OpenAI-compatible endpoint.",
        )
        loader.add_option(
            "ollama_extra_paths",
            Sequence[str],
            [],
            "Extra path prefixes to record besides Ollama's own /api/* and /v1/* endpoints.",
        )
        loader.add_option(
            "ollama_max_text",
            int,
            DEFAULT_MAX_TEXT_CHARS,
            "Most characters of response text kept per interaction; the rest is dropped and the "
            "record flagged truncated_body. Bounds the addon's memory per flow.",
        )
        loader.add_option("ollama_console", bool, True, "Print one line per finished interaction.")
        for option in FEED_OPTIONS:  # the feeds', declared once (companion/feeds.py); they run in the companion
            loader.add_option(option.name, option.typespec, option.default, option.help)
        # Like save.py, refuse to run rather than let traffic through unrecorded: each bad setting is logged
        # as an error, and mitmproxy's startup check then exits with status 1.
        self.problems = apply_deferred(ctx.options)
        for problem in self.problems:
            logger.error("ollama_log: %s", problem)

    def configure(self, updated: set[str]) -> None:
        for name in ALL_OPTION_NAMES:
            if name in updated:
                value = getattr(ctx.options, name)
                problem = option_problem(name, value)
                if problem:
                    raise exceptions.OptionsError(f"{name}={_shown(value)}: {problem}")
        if "ollama_log_dir" in updated:
            self.log = InteractionLog(Path(ctx.options.ollama_log_dir).expanduser())
            self.writer.set_log(self.log)
        if self._running and updated & COMPANION_OPTIONS:
            self._stop_companion()
            self._start_companion()

    def running(self) -> None:
        # Synchronous on purpose: mitmproxy's script loader may call it without awaiting (see the wire notes).
        if self.problems:  # only reached where no startup error check stopped us already
            ctx.master.shutdown()
            return
        self._running = True
        self._start_companion()
        self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    # -- the companion ----------------------------------------------------------------------------
    def feed_settings(self) -> FeedSettings:
        return FeedSettings.from_options(ctx.options, str(self.log.log_dir), upstream_server(list(ctx.options.mode)))

    def _start_companion(self) -> None:
        settings = self.feed_settings()
        if not settings.any_feed:
            logger.info("ollama_feeds: %s", NO_COMPANION)
            return  # nothing to run beside the proxy: it writes the log itself
        self.link = CompanionLink(settings, self.writer.submit)
        self.link.start()

    def _stop_companion(self) -> None:
        link, self.link = self.link, None
        if link is not None:
            link.close()

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            link = self.link
            if link is not None:
                try:
                    link.tick()
                except Exception:  # a bug here must not end the progress for good, nor reach the traffic
                    logger.warning("ollama_log: progress tick failed", exc_info=True)

    # -- which flows ------------------------------------------------------------------------
    def is_ollama(self, flow: http.HTTPFlow) -> bool:
        """Whether this request is Ollama traffic under the ``ollama_hosts``/``ollama_extra_paths`` options.

        In reverse mode the request already carries the upstream's host and port. In a forward mode any
        website's ``/`` or ``/v1/...`` would look like Ollama, so there only port 11434 or ``ollama_hosts`` count.
        """
        request = flow.request
        hosts = ctx.options.ollama_hosts
        if hosts:
            names = {request.pretty_host, f"{request.pretty_host}:{request.port}", request.host}
            if not names.intersection(hosts):
                return False
        elif not isinstance(flow.client_conn.proxy_mode, ReverseMode) and request.port != OLLAMA_PORT:
            return False
        path = request.path
        return classify(path) is not None or any(path.startswith(p) for p in ctx.options.ollama_extra_paths)

    # -- hooks ------------------------------------------------------------------------------
    def next_layer(self, nextlayer: Any) -> None:
        try:
            self.arrival.next_layer(nextlayer)
        except Exception:  # never raise into mitmproxy: the record keeps mitmproxy's own start time
            logger.debug("ollama_log: arrival time not noted", exc_info=True)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        try:
            self.arrival.requestheaders(flow)
        except Exception:
            logger.debug("ollama_log: arrival time not passed on", exc_info=True)

    def request(self, flow: http.HTTPFlow) -> None:
        """A request waiting for its response (Ollama answers headers with the first token): shown as waiting on
        the live feed, but only while someone watches it."""
        link = self.link
        if link is None or not link.watching:
            return
        try:
            if self.is_ollama(flow):
                link.request_pending(self._request_builder(flow))
        except Exception:  # never raise into mitmproxy
            logger.warning("ollama_log: could not note request %s", flow.request.path, exc_info=True)

    def client_connected(self, client: Any) -> None:
        try:
            self.arrival.client_connected(client)
        except Exception:  # never raise into mitmproxy: the record keeps a later start time, unbounded
            logger.debug("ollama_log: kernel arrival time not read", exc_info=True)

    def client_disconnected(self, client: Any) -> None:
        self.arrival.client_disconnected(client)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        try:
            if flow.response is None or not self.is_ollama(flow):
                return
            builder = self._start(flow)
            response = flow.response
            builder.response_started(response.timestamp_start, response.status_code, _body_headers(response.headers))
            flow.response.stream = self._stream_callable(flow.id, builder, flow.response.stream)
        except Exception:  # never raise into mitmproxy: the flow passes unrecorded
            logger.warning("ollama_log: could not start recording %s", _shown_path(flow), exc_info=True)

    def response(self, flow: http.HTTPFlow) -> None:
        if self.link is not None:
            self.link.forget(flow.id)  # a pending request the recorder never took over
        builder = self.builders.get(flow.id)
        if builder is None:
            return
        try:
            response = flow.response
            assert response is not None
            if not response.stream and response.raw_content:  # body came with the headers
                builder.response_body(response.raw_content, response.timestamp_end or time.time())
            self._finish(flow.id, response.timestamp_end)
        except Exception:
            logger.warning("ollama_log: could not record %s", _shown_path(flow), exc_info=True)

    def error(self, flow: http.HTTPFlow) -> None:
        if self.link is not None:
            self.link.forget(flow.id)
        try:
            message = flow.error.msg if flow.error else "unknown error"
            builder = self.builders.get(flow.id)
            if builder is None:
                if flow.response is not None or not self.is_ollama(flow):
                    return
                builder = self._start(flow)  # upstream never answered
                builder.add_flags([FLAG_NO_RESPONSE])
            if message == CLIENT_DISCONNECTED:
                builder.add_flags([FLAG_CLIENT_ABORTED])
                self._finish(flow.id, time.time())
            else:
                builder.add_flags([FLAG_UPSTREAM_FAILED])
                self._finish(flow.id, time.time(), error=message)
        except Exception:
            logger.warning("ollama_log: could not record failed flow %s", _shown_path(flow), exc_info=True)

    def done(self) -> None:
        """Shutdown (SIGINT of mitmdump): every interaction still open is written, flagged; records the log
        could not take are saved to the fallback file named in the warning."""
        for flow_id in list(self.builders):
            self.builders[flow_id].add_flags([FLAG_SHUTDOWN])
            self._finish(flow_id, time.time())
        if self._ticker is not None:
            self._ticker.cancel()
        self._running = False
        self._stop_companion()  # it writes what it holds; what it cannot, the proxy's writer takes
        self.writer.close()

    # -- helpers ----------------------------------------------------------------------------
    def _request_builder(self, flow: http.HTTPFlow) -> InteractionBuilder:
        """A builder that knows only the request (a live ``start`` of a request still waiting)."""
        request = flow.request
        builder = InteractionBuilder(
            source="proxy",
            client=_address(flow.client_conn.peername),
            server=format_address(request.host, request.port),
            record_id=flow.id,
            redaction=ctx.options.ollama_redact,
        )
        builder.request_started(self.arrival.started_at(flow)[0], request.method, request.path, request.headers)
        if request.raw_content:
            builder.request_body(request.raw_content, request.timestamp_end or request.timestamp_start)
        return builder

    def _start(self, flow: http.HTTPFlow) -> InteractionBuilder:
        request = flow.request
        builder = InteractionBuilder(
            source="proxy",
            client=_address(flow.client_conn.peername),
            server=_address(flow.server_conn.address) or format_address(request.host, request.port),
            record_id=flow.id,
            max_text_chars=ctx.options.ollama_max_text,
            redaction=ctx.options.ollama_redact,
        )
        # The builder reads no request header: mitmproxy's Headers object is passed as it is, not copied.
        started, self.start_bounds[flow.id] = self.arrival.started_at(flow)
        builder.request_started(started, request.method, request.path, request.headers)
        body = request.raw_content
        if body:
            builder.request_body(body, request.timestamp_end or request.timestamp_start)
        self.builders[flow.id] = builder
        if self.link is not None:
            self.link.started(builder, len(body) if body else 0)
        return builder

    def _stream_callable(
        self, flow_id: str, builder: InteractionBuilder, previous: object
    ) -> Callable[[bytes], bytes | list[bytes]]:
        """The pass-through callable: every fragment goes back to mitmproxy unchanged, at once."""
        chained = previous if callable(previous) else None
        broken = False

        def observe(data: bytes) -> bytes | list[bytes]:
            nonlocal broken
            if data and not broken:
                try:
                    builder.response_body(data, time.time())
                except Exception:  # stop observing this flow; the bytes still pass
                    broken = True
                    builder.add_flags([FLAG_RECORDER_ERROR])  # the record says its text may be partial
                    logger.warning("ollama_log: stopped parsing flow %s", flow_id, exc_info=True)
            # Returning b"" for a non-empty fragment would end the client's body early.
            return chained(data) if chained is not None else data

        return observe

    def _finish(self, flow_id: str, at: float | None, *, error: str | None = None) -> None:
        builder = self.builders.pop(flow_id, None)
        if builder is None:
            return
        record = builder.finish(at, error=error)
        record.start_bound_ms = self.start_bounds.pop(flow_id, None)
        self._write(record)

    def _write(self, record: InteractionRecord) -> None:
        """Hand the record to the companion (it enriches and writes it), else write it here; never blocks."""
        link = self.link
        if link is None:
            self.writer.submit(record)  # see RecordWriter for outages
        elif not link.finished(record):
            link.flag_and_write(record)  # the companion is down or behind: written here, flagged
        if ctx.options.ollama_console:
            logger.info("ollama %s", one_line(record))
