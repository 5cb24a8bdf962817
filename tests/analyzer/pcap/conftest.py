"""Captures for the analyze-pcap tests, read from the committed corpus (tests/data/captures): no root, no tcpdump.

Capture fixtures return a :class:`tests.support.workload.RealCapture`: the file, the server port to analyze and
the :class:`~tests.support.workload.Sent` list of what every request was and what its client received.

- ``capture_shapes``: every capture shape (``tests.support.corpus.SHAPES``: Linux lo IPv4/IPv6, ``-i any``
  pcapng from dumpcap, macOS DLT_NULL, and the pcapng / DLT_NULL / DLT_LOOP versions derived from them);
- ``proxy_capture``: client → real mitmdump (the addon) → emulator, both legs on ``lo``, and the addon's log.

Live captures (``-m live``) make the same shapes with tcpdump in the test instead; see test_live_capture.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import corpus
from tests.support.workload import ProxyCapture, RealCapture


@pytest.fixture(scope="session")
def capture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("captures")


@pytest.fixture(scope="session")
def capture_shapes(capture_dir: Path) -> dict[str, RealCapture]:
    """Every shape of the same traffic: committed captures plus the framings derived from them."""
    return corpus.capture_shapes(capture_dir)


@pytest.fixture(scope="session")
def proxy_capture() -> ProxyCapture:
    return corpus.proxy_capture()
