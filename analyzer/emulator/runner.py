"""Run the emulator in a background thread, for tests and the demo."""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType

from analyzer.emulator.config import EmulatorConfig
from analyzer.emulator.server import EmulatorServer

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


def format_url(host: str, port: int) -> str:
    """``http://host:port``, with IPv6 literals in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class EmulatorThread:
    """An emulator on its own event loop in a daemon thread.

    >>> with EmulatorThread(EmulatorConfig(token_ms=0)) as emu:
    ...     ollama.Client(host=emu.url).generate(model="llama3.2:1b", prompt="hi")
    """

    def __init__(self, config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or EmulatorConfig()
        self.host = host
        self.port = port
        self.server = EmulatorServer(self.config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopped: asyncio.Event | None = None

    @property
    def url(self) -> str:
        """The base URL clients use, e.g. ``http://127.0.0.1:41234``."""
        return format_url(self.host, self.port)

    def start(self) -> int:
        """Start serving; returns the bound port. Raises the bind error (e.g. port busy) if any."""
        if self._thread is not None:
            return self.port
        self._thread = threading.Thread(target=self._run, name=f"ollama-emulator-{self.host}", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise TimeoutError("emulator did not start")
        if self._error is not None:
            self._thread.join(STOP_TIMEOUT_S)
            self._thread = None
            raise self._error
        return self.port

    def stop(self) -> None:
        """Close the listener and all connections, and join the thread. Safe to call twice."""
        loop, stopped, thread = self._loop, self._stopped, self._thread
        if loop is not None and stopped is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopped.set)
        if thread is not None:
            thread.join(STOP_TIMEOUT_S)
        self._thread = None

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        try:
            self.port = await self.server.start(self.host, self.port)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stopped.wait()
        finally:
            await self.server.close()

    def __enter__(self) -> EmulatorThread:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
