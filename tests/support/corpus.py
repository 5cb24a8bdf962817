"""The committed capture corpus (``tests/data/captures``): real captures, what each client received, and the
golden records ``analyze-pcap`` makes of each. Reading it needs neither root nor tcpdump.

``manifest.json`` names every capture: its file, the server port and host, how it was made, the
:class:`~tests.support.workload.Sent` list of its workload (or ``sent_from``: the capture it is a rewrite of),
and (TLS) the key log, (proxy) the addon's log directory and the proxy's port, (foreign) the echo port.
``<name>.records.jsonl`` is the golden output of ``analyze-pcap <file> --port <port> --jsonl``;
``regenerate.py`` in the same folder makes it all again (root).

:func:`capture_shapes` also derives the framings that need no capture of their own, exactly as other tools would
write them (pcapng of the lo capture, DLT_NULL and DLT_LOOP rewrites): same packets, same timestamps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.damage import to_dlt_loop, to_dlt_null
from tests.support.pcapfile import capture_to_pcapng, read_pcap, write_pcap
from tests.support.workload import ProxyCapture, RealCapture, Sent

CORPUS = Path(__file__).resolve().parents[1] / "data" / "captures"
MANIFEST = CORPUS / "manifest.json"

# Shapes the analyzer's capture tests run over: committed files, then the ones derived from them.
COMMITTED_SHAPES = ("lo4", "lo6", "any4", "null6")
DERIVED_SHAPES = {"pcapng4": "lo4", "null4": "lo4", "loop4": "lo4", "loop6": "lo6"}
SHAPES = COMMITTED_SHAPES + tuple(DERIVED_SHAPES)


@dataclass(frozen=True)
class Entry:
    """One corpus capture as the manifest describes it."""

    name: str
    path: Path
    port: int
    host: str
    made_with: str
    sent: list[Sent]
    extra: dict[str, Any]

    @property
    def golden_path(self) -> Path:
        return CORPUS / f"{self.name}.records.jsonl"

    def golden(self) -> list[dict[str, Any]]:
        """The golden records, as dicts, in file order."""
        lines = self.golden_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def capture(self) -> RealCapture:
        return RealCapture(self.path, self.port, self.sent, self.host)

    def golden_argv(self) -> list[str]:
        """The ``analyze-pcap`` arguments whose ``--jsonl`` output is the golden (paths relative to the corpus)."""
        argv = [self.path.name, "--port", str(self.port)]
        if "proxy_port" in self.extra:
            argv += ["--port", str(self.extra["proxy_port"])]
        if "tls_keylog" in self.extra:
            argv += ["--tls-keylog", self.extra["tls_keylog"], "--tls-port", str(self.port)]
        return [*argv, "--jsonl"]


def manifest() -> dict[str, Any]:
    return json.loads(MANIFEST.read_text(encoding="utf-8"))


def entries() -> dict[str, Entry]:
    """Every capture of the corpus, by name."""
    captures = manifest()["captures"]
    out = {}
    for name, item in captures.items():
        known = {"file", "port", "host", "made_with", "sent", "sent_from"}
        sent = captures[item["sent_from"]]["sent"] if "sent_from" in item else item["sent"]
        out[name] = Entry(
            name,
            CORPUS / item["file"],
            item["port"],
            item["host"],
            item["made_with"],
            [Sent.from_dict(s) for s in sent],
            {k: v for k, v in item.items() if k not in known},
        )
    return out


def capture_shapes(workdir: Path) -> dict[str, RealCapture]:
    """Every shape of the same traffic: the committed lo/any/DLT_NULL captures, plus pcapng, DLT_NULL and
    DLT_LOOP versions of the lo captures written into ``workdir``."""
    found = entries()
    shapes = {name: found[name].capture() for name in COMMITTED_SHAPES}
    for name, source in DERIVED_SHAPES.items():
        original = shapes[source]
        linux = read_pcap(original.path)
        if name.startswith("pcapng"):
            path = workdir / f"{name}.pcapng"
            path.write_bytes(capture_to_pcapng(linux))
        else:
            rewrite = to_dlt_null if name.startswith("null") else to_dlt_loop
            path = write_pcap(workdir / f"{name}.pcap", rewrite(linux))
        shapes[name] = RealCapture(path, original.port, original.sent, original.host)
    return shapes


def proxy_capture() -> ProxyCapture:
    """Client → mitmdump (the addon) → emulator, both legs on lo, with the addon's own log."""
    entry = entries()["proxy"]
    return ProxyCapture(entry.path, entry.port, entry.extra["proxy_port"], entry.sent, CORPUS / entry.extra["log_dir"])
