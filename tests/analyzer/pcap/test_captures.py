"""Tests for analyzer.pcap.captures: pcap/pcapng streaming readers."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.pcap.captures import CaptureReader, first_packet_time, iter_packets
from analyzer.pcap.errors import (
    CorruptCaptureError,
    EmptyCaptureError,
    NotACaptureError,
    UnsupportedLinkTypeError,
)
from analyzer.pcap.linklayer import SUPPORTED_LINKTYPES
from tests.support.pcapfile import pcap_bytes, pcapng_bytes

FRAMES = [(1700000000.123456, b"\x01" * 60), (1700000001.5, b"\x02" * 1514), (1700000002.000001, b"\x03" * 54)]


def write(tmp_path: Path, data: bytes, name: str = "c.pcap") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("nanos", [False, True])
@pytest.mark.parametrize("big_endian", [False, True])
def test_pcap_magics_and_byte_orders(tmp_path: Path, nanos: bool, big_endian: bool) -> None:
    path = write(tmp_path, pcap_bytes(FRAMES, 1, nanos=nanos, big_endian=big_endian))
    got = [(ts, lt, bytes(f)) for ts, lt, f in iter_packets(path)]
    assert [f for _, _, f in got] == [f for _, f in FRAMES]
    assert {lt for _, lt, _ in got} == {1}
    for (ts, _, _), (want, _) in zip(got, FRAMES, strict=True):
        assert ts == pytest.approx(want, abs=1e-6)


def test_pcap_nanosecond_precision(tmp_path: Path) -> None:
    path = write(tmp_path, pcap_bytes([(1700000000.000000123, b"x" * 20)], nanos=True))
    ((ts, _, _),) = iter_packets(path)
    assert ts == pytest.approx(1700000000.000000123, abs=1e-6)


def test_pcap_large_file_spans_read_chunks(tmp_path: Path) -> None:
    frames = [(1000.0 + i, bytes([i % 256]) * (1000 + i % 500)) for i in range(3000)]  # > 3 MiB
    path = write(tmp_path, pcap_bytes(frames))
    got = [bytes(f) for _, _, f in iter_packets(path)]
    assert got == [f for _, f in frames]


def test_pcapng_two_interfaces_link_types_and_tsresol(tmp_path: Path) -> None:
    data = pcapng_bytes(
        [(1, None), (276, 9), (0, 0x80 | 20)],
        [(0, 1700000000.25, b"a" * 40), (1, 1700000001.123456789, b"b" * 41), (2, 1700000002.5, b"c" * 43)],
    )
    path = write(tmp_path, data, "c.pcapng")
    got = list(iter_packets(path))
    assert [(lt, bytes(f)) for _, lt, f in got] == [(1, b"a" * 40), (276, b"b" * 41), (0, b"c" * 43)]
    assert got[0][0] == pytest.approx(1700000000.25, abs=1e-6)
    assert got[1][0] == pytest.approx(1700000001.123456789, abs=1e-6)
    assert got[2][0] == pytest.approx(1700000002.5, abs=1e-5)


def test_pcapng_big_endian_and_simple_blocks(tmp_path: Path) -> None:
    path = write(tmp_path, pcapng_bytes([(101, None)], [(0, 5.0, b"x" * 33)], big_endian=True), "b.pcapng")
    assert [(lt, bytes(f)) for _, lt, f in iter_packets(path)] == [(101, b"x" * 33)]
    path = write(tmp_path, pcapng_bytes([(1, None)], [(0, 0.0, b"y" * 21)], simple=True), "s.pcapng")
    assert [bytes(f) for _, _, f in iter_packets(path)] == [b"y" * 21]


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, b"")
    with pytest.raises(EmptyCaptureError, match=r"c\.pcap: empty file"):
        list(iter_packets(path))


def test_garbage_file(tmp_path: Path) -> None:
    path = write(tmp_path, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(NotACaptureError, match=r"c\.pcap: not a pcap or pcapng"):
        list(iter_packets(path))


def test_unsupported_link_type_names_it(tmp_path: Path) -> None:
    path = write(tmp_path, pcap_bytes(FRAMES, 127))
    with pytest.raises(UnsupportedLinkTypeError) as info:
        list(iter_packets(path, supported_linktypes=SUPPORTED_LINKTYPES))
    assert "c.pcap" in str(info.value) and "IEEE802_11_RADIOTAP" in str(info.value)
    assert "--engine tshark" in str(info.value)


def test_pcapng_unsupported_interface_without_packets_is_fine(tmp_path: Path) -> None:
    path = write(tmp_path, pcapng_bytes([(127, None), (1, None)], [(1, 1.0, b"z" * 30)]), "c.pcapng")
    assert len(list(iter_packets(path, supported_linktypes=SUPPORTED_LINKTYPES))) == 1


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_truncated_last_packet_is_a_warning(tmp_path: Path, fmt: str) -> None:
    data = pcap_bytes(FRAMES) if fmt == "pcap" else pcapng_bytes([(1, None)], [(0, ts, f) for ts, f in FRAMES])
    path = write(tmp_path, data[:-20], "cut." + fmt)
    warnings: list[str] = []
    reader = CaptureReader(path, on_warning=warnings.append)
    got = [bytes(f) for _, _, f in reader]
    assert got == [FRAMES[0][1], FRAMES[1][1]]
    assert len(warnings) == 1 and reader.warnings == warnings
    assert warnings[0].startswith(path + ": last packet truncated (")
    assert "analyzed the intact part" in warnings[0]
    if fmt == "pcap":
        assert "(34 of 54 bytes)" in warnings[0]


def test_truncated_record_header(tmp_path: Path) -> None:
    data = pcap_bytes(FRAMES[:1]) + b"\x00" * 7
    warnings: list[str] = []
    assert len(list(iter_packets(write(tmp_path, data), on_warning=warnings.append))) == 1
    assert "last packet truncated" in warnings[0]


def test_corrupt_record_length(tmp_path: Path) -> None:
    data = bytearray(pcap_bytes(FRAMES))
    data[24 + 8 : 24 + 12] = (0x7FFFFFFF).to_bytes(4, "little")
    with pytest.raises(CorruptCaptureError):
        list(iter_packets(write(tmp_path, bytes(data))))


def test_first_packet_time(tmp_path: Path) -> None:
    assert first_packet_time(write(tmp_path, pcap_bytes(FRAMES))) == pytest.approx(FRAMES[0][0])
    assert first_packet_time(write(tmp_path, pcap_bytes([]), "none.pcap")) is None
