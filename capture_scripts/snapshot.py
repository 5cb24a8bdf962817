"""Take one snapshot: through ``sudo -n HELPER`` or, where the user may capture directly, tcpdump/dumpcap.

Either way the finished file ends up in the configured output directory under the name
``ollama-YYYYmmddTHHMMSSZ.pcap`` (the UTC start time), appearing there atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pwd
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

from capture_scripts import helper as helper_mod
from capture_scripts.config import CaptureConfig
from capture_scripts.install import direct_capture_tool

SYSTEM_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"
STOP_GRACE = 15.0
SNAPSHOT_GLOBS = ("ollama-*.pcap", "ollama-*.pcapng")


class CaptureError(Exception):
    """A snapshot could not be taken; the message is meant for the user."""


class SnapshotDiscarded(CaptureError):
    """The snapshot was stopped (signal) before the capture program had written anything; nothing was kept."""


class SudoRuleMissing(CaptureError):
    """``sudo -n`` refused: no NOPASSWD rule for the helper (setup was not run for this user)."""


@dataclasses.dataclass
class Snapshot:
    """One finished snapshot."""

    path: Path
    bytes: int
    packets: int
    started: float
    seconds: float
    method: str
    stopped_early: bool = False

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form (for the state file)."""
        data = dataclasses.asdict(self)
        data["path"] = str(self.path)
        return data


def count_packets(path: Path) -> int:
    """Number of packet records in a pcap or pcapng file (a truncated last record is not counted)."""
    data = path.read_bytes()
    if len(data) < 24:
        return 0
    magic = data[:4]
    if magic == b"\x0a\x0d\x0d\x0a":  # pcapng: count enhanced/simple/obsolete packet blocks
        bom = data[8:12]
        order = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
        count, offset = 0, 0
        while offset + 12 <= len(data):
            block_type, length = struct.unpack_from(order + "II", data, offset)
            if length < 12 or offset + length > len(data):
                break
            if block_type in (2, 3, 6):
                count += 1
            offset += length
        return count
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        order = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        order = ">"
    else:
        raise CaptureError(f"{path}: not a pcap or pcapng file")
    count, offset = 0, 24
    while offset + 16 <= len(data):
        (caplen,) = struct.unpack_from(order + "I", data, offset + 8)
        if offset + 16 + caplen > len(data):
            break
        count += 1
        offset += 16 + caplen
    return count


def snapshot_name(started: float) -> str:
    """``ollama-YYYYmmddTHHMMSSZ.pcap`` for a UTC start time."""
    return time.strftime("ollama-%Y%m%dT%H%M%SZ.pcap", time.gmtime(started))


def list_snapshots(directory: Path) -> list[Path]:
    """Finished snapshots in ``directory`` (hidden partial files excluded), oldest name first."""
    if not directory.is_dir():
        return []
    found = {p for pattern in SNAPSHOT_GLOBS for p in directory.glob(pattern) if p.is_file()}
    return sorted(found)


def deliver(src: Path, output_dir: Path, name: str | None = None) -> Path:
    """Move a finished snapshot into ``output_dir`` (as ``name``) without replacing anything; return its path.

    Same file system: a hard link then unlink (atomic, never overwrites). Otherwise a copy to a hidden
    ``.partial`` name, fsync, rename, and only then the source is removed.
    """
    output_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = name or src.name
    stem, suffix = name.rsplit(".", 1)
    for attempt in range(100):
        dst = output_dir / (name if attempt == 0 else f"{stem}-{attempt}.{suffix}")
        try:
            os.link(src, dst)
        except FileExistsError:
            continue
        except OSError:  # EXDEV, or links not permitted: copy instead
            if dst.exists():
                continue
            tmp = output_dir / f".{dst.name}.partial"
            shutil.copyfile(src, tmp)
            os.chmod(tmp, 0o600)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, dst)
        src.unlink()
        return dst
    raise CaptureError(f"cannot find a free name for {src.name} in {output_dir}")


def capture_method(config: CaptureConfig) -> tuple[str, str | None]:
    """``("direct", tool)`` when the user can capture without sudo (and config allows), else ``("sudo", None)``."""
    if config.method == "sudo":
        return "sudo", None
    tool = direct_capture_tool()
    if tool:
        return "direct", tool
    if config.method == "direct":
        raise CaptureError(
            "method is 'direct' but no capture program is usable without sudo "
            "(Linux: setcap'ed dumpcap/tcpdump, macOS: ChmodBPF)"
        )
    return "sudo", None


def _sudo() -> str:
    found = shutil.which("sudo", path=SYSTEM_PATH)
    if not found:
        raise CaptureError("sudo is not installed")
    return found


class Snapshotter:
    """Takes snapshots for one configuration; :meth:`stop` (e.g. from a signal handler) ends the current one early.

    A snapshot stopped early is still finished properly: tcpdump is told to stop (through sudo, which relays
    SIGTERM to the helper), writes out what it has, and the file is delivered as usual.
    """

    def __init__(self, config: CaptureConfig) -> None:
        self.config = config
        self.current: subprocess.Popen[bytes] | None = None
        self.stop_signal = signal.SIGTERM
        self.stopped = False

    def stop(self) -> None:
        """Ask the running capture (if any) to finish now."""
        self.stopped = True
        proc = self.current
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                proc.send_signal(self.stop_signal)

    def _wait(self, proc: subprocess.Popen[bytes], duration: int) -> tuple[bytes, bytes]:
        """Wait for the capture; past its duration (+ slack) ask it to stop, then kill it; all bounded."""
        try:
            return proc.communicate(timeout=duration)
        except subprocess.TimeoutExpired:
            pass
        if self.stop_signal == signal.SIGINT:  # direct tcpdump: we own the deadline
            proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            return proc.communicate(timeout=STOP_GRACE + 60)
        self.stop()
        with contextlib.suppress(subprocess.TimeoutExpired):
            return proc.communicate(timeout=STOP_GRACE)
        proc.kill()
        return proc.communicate()

    def collect_leftovers(self) -> list[Path]:
        """Move finished files an interrupted run left in the user's spool outbox to the output directory."""
        outbox = self.config.spool_dir / pwd.getpwuid(os.getuid()).pw_name
        moved = []
        with contextlib.suppress(PermissionError):
            for path in list_snapshots(outbox):
                moved.append(deliver(path, self.config.output_dir))
        return moved

    def take(self, duration: int | None = None) -> Snapshot:
        """Capture one snapshot and deliver it to the output directory."""
        config = self.config
        duration = duration or config.duration
        if self.stopped:
            raise SnapshotDiscarded("stopped before the snapshot started; nothing kept")
        method, tool = capture_method(config)
        if method == "sudo":
            return self._take_sudo(duration)
        assert tool is not None
        return self._take_direct(tool, duration)

    def _take_sudo(self, duration: int) -> Snapshot:
        config = self.config
        argv = [_sudo(), "-n", str(config.helper), "capture", "--interface", config.interface]
        argv += ["--duration", str(duration)]
        for port in config.ports:
            argv += ["--port", str(port)]
        self.stop_signal = signal.SIGTERM
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a terminal's Ctrl-C reaches us, and we stop the capture deliberately
            env={"PATH": SYSTEM_PATH, "LC_ALL": "C"},
        )
        self.current = proc
        try:
            if self.stopped:
                self.stop()
            out, err = self._wait(proc, duration + 30)
        finally:
            self.current = None
        message = err.decode("utf-8", "replace").strip()
        if proc.returncode != 0:
            if "password is required" in message or "a terminal is required" in message:
                raise SudoRuleMissing(
                    f"sudo has no rule letting {pwd.getpwuid(os.getuid()).pw_name} run {config.helper} without "
                    f"a password; run once as root: sudo ollama-capture setup --user "
                    f"{pwd.getpwuid(os.getuid()).pw_name}"
                )
            last = message.splitlines()[-1] if message else f"exit status {proc.returncode}"
            raise CaptureError(f"capture helper failed: {last}")
        try:
            summary = json.loads(out.decode("utf-8").strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise CaptureError(f"capture helper gave no summary: {out[-200:]!r}") from None
        if summary.get("discarded"):
            raise SnapshotDiscarded("snapshot stopped before the capture began; nothing kept")
        path = deliver(Path(summary["path"]), config.output_dir)
        return Snapshot(
            path=path,
            bytes=path.stat().st_size,
            packets=count_packets(path),
            started=float(summary["started"]),
            seconds=float(summary["seconds"]),
            method="sudo",
            stopped_early=bool(summary.get("stopped_early")),
        )

    def _take_direct(self, tool: str, duration: int) -> Snapshot:
        config = self.config
        interfaces = helper_mod.machine_interfaces()
        if config.interface not in interfaces:
            choices = ", ".join(sorted(interfaces))
            raise CaptureError(f"unknown interface {config.interface!r}; choose one of: {choices}")
        if "dumpcap" in Path(tool).name:
            argv = [tool, "-q", "-i", config.interface, "-f", helper_mod.bpf_filter(config.ports), "-P", "-w", "-"]
        else:
            argv = helper_mod.tcpdump_argv(tool, config.interface, config.ports, helper_mod.drop_user())
        config.output_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        started = time.time()
        name = snapshot_name(started)
        tmp = config.output_dir / f".{name}.{os.getpid()}.partial"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            self.stop_signal = signal.SIGINT
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=subprocess.PIPE,
                start_new_session=True,
                env={"PATH": SYSTEM_PATH, "LC_ALL": "C"},
            )
            self.current = proc
            try:
                if self.stopped:
                    self.stop()
                _, err = self._wait(proc, duration)
            finally:
                self.current = None
            if os.fstat(fd).st_size < 24 and self.stopped:
                raise SnapshotDiscarded("snapshot stopped before the capture began; nothing kept")
            if os.fstat(fd).st_size < 24:
                raise CaptureError(f"{tool} wrote no capture: {err.decode('utf-8', 'replace').strip()[-300:]}")
            os.fsync(fd)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)
        try:
            path = deliver(tmp, config.output_dir, name)
        finally:
            tmp.unlink(missing_ok=True)
        return Snapshot(
            path=path,
            bytes=path.stat().st_size,
            packets=count_packets(path),
            started=started,
            seconds=round(time.time() - started, 3),
            method=f"direct:{Path(tool).name}",
            stopped_early=self.stopped,
        )
