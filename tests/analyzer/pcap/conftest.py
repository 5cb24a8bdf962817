"""Real loopback captures of the official clients talking to the emulator, made once per session.

Capture fixtures return a :class:`capture_tools.RealCapture`: the pcap file, the server port to analyze
and the :class:`capture_tools.Sent` list of what every request was and what its client received. They
skip (with the reason) unless running as root with tcpdump, tshark and editcap installed.

- ``workload_lo4``: emulator on 127.0.0.1, captured at once on ``lo`` (Ethernet) and ``any`` (SLL2);
- ``workload_lo6``: emulator on ::1, captured on ``lo``;
- ``capture_shapes``: every capture shape (``capture_tools.SHAPES``: the above, pcapng via editcap, DLT_NULL
  and DLT_LOOP rewrites), name → capture;
- ``proxy_capture``: client → real mitmdump (the addon) → emulator, both legs on ``lo``, and the addon's log.

Shared code lives in ``capture_tools`` (a module name of its own: test modules must not import ``conftest``,
of which the test tree has several).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from capture_tools import (
    ProxyCapture,
    RealCapture,
    Workload,
    capture_workload,
    make_proxy_capture,
    read_pcap,
    require_capture_tools,
    to_dlt_loop,
    to_dlt_null,
    write_pcap,
)


@pytest.fixture(scope="session")
def capture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("captures")


@pytest.fixture(scope="session")
def workload_lo4(capture_dir: Path) -> Workload:
    """The workload against 127.0.0.1, captured on ``lo`` and on ``any`` at the same time."""
    require_capture_tools()
    return capture_workload(capture_dir, "127.0.0.1", {"lo4": "lo", "any4": "any"})


@pytest.fixture(scope="session")
def workload_lo6(capture_dir: Path) -> Workload:
    """The workload against ::1, captured on ``lo``."""
    require_capture_tools()
    return capture_workload(capture_dir, "::1", {"lo6": "lo"})


@pytest.fixture(scope="session")
def capture_shapes(workload_lo4: Workload, workload_lo6: Workload, capture_dir: Path) -> dict[str, RealCapture]:
    """Every shape of the same traffic: Linux lo (v4, v6), any (SLL2), pcapng, macOS lo0, OpenBSD loop."""
    shapes = {
        "lo4": workload_lo4.capture("lo4"),
        "any4": workload_lo4.capture("any4"),
        "lo6": workload_lo6.capture("lo6"),
    }
    pcapng = capture_dir / "pcapng4.pcapng"
    subprocess.run(
        ["editcap", "-F", "pcapng", str(shapes["lo4"].path), str(pcapng)], check=True, capture_output=True, timeout=60
    )
    shapes["pcapng4"] = RealCapture(pcapng, workload_lo4.port, workload_lo4.sent, workload_lo4.host)
    for suffix, workload in (("4", workload_lo4), ("6", workload_lo6)):
        linux = read_pcap(shapes[f"lo{suffix}"].path)
        for name, rewrite in (("null", to_dlt_null), ("loop", to_dlt_loop)):
            path = write_pcap(capture_dir / f"{name}{suffix}.pcap", rewrite(linux))
            shapes[f"{name}{suffix}"] = RealCapture(path, workload.port, workload.sent, workload.host)
    return shapes


# --------------------------------------------------------------------------- through the proxy


@pytest.fixture(scope="session")
def proxy_capture(capture_dir: Path) -> ProxyCapture:
    require_capture_tools()
    return make_proxy_capture(capture_dir)
