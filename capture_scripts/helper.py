#!/usr/bin/python3 -I
"""ollama-capture-helper: the only program the ollama-capture sudoers rule allows.

It takes one packet snapshot with tcpdump and hands the finished file to the user who invoked it through
sudo. Everything it passes to tcpdump it builds itself from strictly validated inputs:

    ollama-capture-helper check
    ollama-capture-helper capture --interface IF --duration S --port N [--port N]... [--name NAME]
    ollama-capture-helper powermetrics --interval MS --duration S

* IF must be one of this machine's interfaces (or ``any`` on Linux);
* S is an integer number of seconds, 1..MAX_DURATION; the helper stops tcpdump itself when it is up,
  whether or not any packet arrived;
* N are decimal port numbers (at most MAX_PORTS); the BPF filter is ``tcp port N or tcp port M`` made from
  the parsed integers, never from the user's text;
* NAME is a bare file name ``[A-Za-z0-9][A-Za-z0-9_-]*.pcap``; the default is ``ollama-<UTC start>.pcap``.

``powermetrics`` (macOS) runs Apple's ``/usr/bin/powermetrics`` for the resource samplers with a command line the
helper builds itself: samplers ``cpu_power,gpu_power`` (plus ``ane_power`` where this macOS lists it), plist output
(``-f plist``, NUL between samples) on the helper's standard output, ``-i MS`` with MS an integer 100..10000 and
``-n`` samples for S seconds (1..MAX_DURATION); the helper stops it when S is up in any case. Nothing is written
to disk, no other sampler (``tasks`` would list every process) and no other flag can be asked for.

The capture is written to a file the helper creates itself (O_CREAT|O_EXCL|O_NOFOLLOW) in the root-only
directory ``SPOOL_DIR/.partial`` and given to tcpdump as its standard output (``-w -``), so tcpdump never opens
a path and can drop privileges (``-Z``) to its own account. When tcpdump is done the file is fsynced, chowned
to the invoking user, made mode 0600 and hard-linked under its final name into ``SPOOL_DIR/<user>/``; a
half-written ``.pcap`` is never visible under a final name. The last stdout line is a JSON summary.

Disk use is bounded twice. Each capture may write at most an equal share (1/MAX_CONCURRENT) of the space
that is free above MIN_FREE_BYTES once what running captures may still write is set aside, and never more
than MAX_FILE_BYTES (enforced with RLIMIT_FSIZE on tcpdump; a cut-off last packet is trimmed). And a capture
is refused while the user's outbox already holds MAX_OUTBOX_FILES files or MAX_OUTBOX_BYTES bytes.

This file is installed root-owned by ``ollama-capture setup``, which writes the settings block below. It uses
only the Python standard library and runs in isolated mode (``-I``) so no environment variable, user site
directory or working directory can inject code. Exit codes: 0 done, 2 refused (bad arguments), 3 environment
problem (spool, tcpdump, disk space, full outbox, too many captures), 4 tcpdump failed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import mmap
import os
import pwd
import re
import resource
import signal
import stat
import struct
import subprocess
import sys
import time
from dataclasses import dataclass

# --- settings written by `ollama-capture setup` ---
SPOOL_DIR = "/var/spool/ollama-wire"
MAX_DURATION = 600
ALLOWED_PORTS = (11434,)
MAX_OUTBOX_FILES = 200
MAX_OUTBOX_BYTES = 2147483648
# --- end of settings ---

MAX_PORTS = 16
MAX_FILE_BYTES = 2 * 1024**3
MIN_FREE_BYTES = 256 * 1024**2
MIN_CAPTURE_BYTES = 1024**2
MAX_CONCURRENT = 4
BUDGET_LOCK_WAIT = 30.0
STOP_GRACE = 10.0
TCPDUMP_CANDIDATES = ("/usr/bin/tcpdump", "/usr/sbin/tcpdump", "/sbin/tcpdump", "/bin/tcpdump")
POWERMETRICS_CANDIDATES = ("/usr/bin/powermetrics",)
POWERMETRICS_INTERVAL_MS = (100, 10_000)
DROP_USERS = ("tcpdump", "_tcpdump", "nobody")
SAFE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}

EXIT_OK, EXIT_REFUSED, EXIT_ENV, EXIT_CAPTURE = 0, 2, 3, 4

_IFNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,14}")
_NUMBER = re.compile(r"[0-9]{1,6}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,79}\.pcap")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_SLOT = re.compile(r"slot-[0-9]+-[0-9]+\.lock")
_RESERVATION = re.compile(r"([0-9]{1,20}) ([A-Za-z0-9][A-Za-z0-9_-]{0,79}\.pcap\.[0-9]+\.partial)\n")


class Refused(Exception):
    """An argument failed validation; nothing was started."""


class EnvironmentProblem(Exception):
    """The machine is not in a state the helper can safely capture in."""


def machine_interfaces() -> set[str]:
    """Return the names of this machine's network interfaces (plus ``any`` where tcpdump supports it)."""
    if os.path.isdir("/sys/class/net"):
        return set(os.listdir("/sys/class/net")) | {"any"}
    for ifconfig in ("/sbin/ifconfig", "/usr/sbin/ifconfig"):
        if os.path.exists(ifconfig):
            out = subprocess.run(
                [ifconfig, "-l"], capture_output=True, text=True, env=SAFE_ENV, timeout=10, check=False
            ).stdout
            return set(out.split())
    return set()


def _number(text: str, what: str, low: int, high: int) -> int:
    if not _NUMBER.fullmatch(text):
        raise Refused(f"{what} must be a decimal integer, got {text!r}")
    value = int(text)
    if not low <= value <= high:
        raise Refused(f"{what} must be between {low} and {high}, got {value}")
    return value


@dataclass(frozen=True)
class CaptureRequest:
    """A validated ``capture`` request: nothing in it came from the caller unchecked."""

    interface: str  # one of the machine's interfaces
    duration: int  # seconds, 1..MAX_DURATION
    ports: tuple[int, ...]  # distinct, each among ALLOWED_PORTS
    name: str | None  # a bare file name, or None for a time-stamped one


def parse_capture_args(
    args: list[str], interfaces: set[str], allowed_ports: tuple[int, ...] = ALLOWED_PORTS
) -> CaptureRequest:
    """Validate ``capture`` arguments into a :class:`CaptureRequest`; :class:`Refused` says what is wrong.

    Only ``--interface``, ``--duration``, ``--port`` (repeatable) and ``--name`` are known, each followed by
    its value as a separate word. Anything else is refused. Ports must be among those setup allowed
    (``ALLOWED_PORTS``): the rule lets a user capture Ollama's traffic, not any service's.
    """
    if len(args) > 2 * (MAX_PORTS + 3):
        raise Refused("too many arguments")
    values: dict[str, str] = {}
    ports: list[int] = []
    i = 0
    while i < len(args):
        flag = args[i]
        if flag not in ("--interface", "--duration", "--port", "--name"):
            raise Refused(f"unknown argument {flag!r}")
        if i + 1 >= len(args):
            raise Refused(f"{flag} needs a value")
        value = args[i + 1]
        i += 2
        if flag == "--port":
            if len(ports) >= MAX_PORTS:
                raise Refused(f"at most {MAX_PORTS} ports")
            port = _number(value, "port", 1, 65535)
            if port not in allowed_ports:
                allowed = ", ".join(map(str, allowed_ports))
                raise Refused(f"port {port} is not one setup allowed ({allowed}); rerun setup with --port {port}")
            if port not in ports:
                ports.append(port)
            continue
        if flag in values:
            raise Refused(f"{flag} given twice")
        values[flag] = value
    for required in ("--interface", "--duration"):
        if required not in values:
            raise Refused(f"{required} is required")
    if not ports:
        raise Refused("at least one --port is required")
    interface = values["--interface"]
    if not _IFNAME.fullmatch(interface) or interface not in interfaces:
        raise Refused(f"unknown interface {interface!r}; choose one of: {', '.join(sorted(interfaces))}")
    duration = _number(values["--duration"], "duration", 1, MAX_DURATION)
    name = values.get("--name")
    if name is not None and not _NAME.fullmatch(name):
        raise Refused(f"name must be a bare file name like ollama-1.pcap, got {name!r}")
    return CaptureRequest(interface, duration, tuple(ports), name)


def bpf_filter(ports: list[int]) -> str:
    """Build the capture filter from already-validated port integers."""
    return " or ".join(f"tcp port {int(port):d}" for port in ports)


def tcpdump_argv(tcpdump: str, interface: str, ports: list[int], drop_user: str | None) -> list[str]:
    """The complete tcpdump command line; the capture goes to standard output (``-w -``).

    ``--immediate-mode`` is essential: without it tcpdump loses the unfinished ring block when stopped, i.e.
    every packet of a short capture. ``-U`` flushes each packet so even a killed tcpdump leaves a valid file.
    """
    argv = [tcpdump, "-i", interface, "--immediate-mode", "-n", "-s", "0", "-U", "-w", "-"]
    if drop_user:
        argv += ["-Z", drop_user]
    return [*argv, "--", bpf_filter(ports)]


def find_tcpdump() -> str:
    """Return a root-owned tcpdump from a fixed list of system locations (never from $PATH)."""
    return _root_owned_program("tcpdump", TCPDUMP_CANDIDATES)


def _root_owned_program(what: str, candidates: tuple[str, ...]) -> str:
    for path in candidates:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_uid == 0 and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return path
    raise EnvironmentProblem(f"no root-owned {what} in {', '.join(candidates)}")


def parse_powermetrics_args(args: list[str]) -> dict[str, int]:
    """Validate ``powermetrics`` arguments: exactly ``--interval MS`` and ``--duration S``, each once."""
    if len(args) != 4:
        raise Refused("usage: powermetrics --interval MS --duration S")
    values: dict[str, str] = {}
    for flag, value in (args[0:2], args[2:4]):
        if flag not in ("--interval", "--duration"):
            raise Refused(f"unknown argument {flag!r}")
        if flag in values:
            raise Refused(f"{flag} given twice")
        values[flag] = value
    low, high = POWERMETRICS_INTERVAL_MS
    return {
        "interval": _number(values["--interval"], "interval (ms)", low, high),
        "duration": _number(values["--duration"], "duration", 1, MAX_DURATION),
    }


def powermetrics_argv(powermetrics: str, interval_ms: int, duration: int, ane_sampler: bool) -> list[str]:
    """The complete powermetrics command line, from validated integers only."""
    samplers = "cpu_power,gpu_power" + (",ane_power" if ane_sampler else "")
    count = max(1, -(-duration * 1000 // interval_ms))  # ceil: enough samples to cover the duration
    return [powermetrics, "--samplers", samplers, "-i", str(int(interval_ms)), "-n", str(count), "-f", "plist"]


def has_ane_sampler(powermetrics: str) -> bool:
    """Whether this macOS's powermetrics lists an ``ane_power`` sampler (older ones report ANE under cpu_power)."""
    try:
        listing = subprocess.run(
            [powermetrics, "-h"], capture_output=True, text=True, env=SAFE_ENV, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "ane_power" in listing.stdout + listing.stderr


def run_bounded(argv: list[str], duration: int) -> int:
    """Run ``argv`` with our standard output for at most ``duration`` seconds (then SIGINT, then SIGKILL)."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=SAFE_ENV, close_fds=True)

    def stop(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    try:
        return proc.wait(timeout=duration + 2)  # powermetrics stops itself after -n samples
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()


def powermetrics(args: list[str]) -> int:
    """The ``powermetrics`` command: validate, then stream powermetrics' plists to our standard output."""
    opts = parse_powermetrics_args(args)
    program = _root_owned_program("powermetrics", POWERMETRICS_CANDIDATES)
    argv = powermetrics_argv(program, opts["interval"], opts["duration"], has_ane_sampler(program))
    rc = run_bounded(argv, opts["duration"])
    return EXIT_OK if rc in (0, -signal.SIGINT) else EXIT_CAPTURE


def drop_user() -> str | None:
    """The unprivileged account tcpdump switches to after opening the device (None when running as non-root)."""
    if os.geteuid() != 0:
        return None
    for name in DROP_USERS:
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    return None


def invoking_user() -> pwd.struct_passwd:
    """The account sudo ran us for (SUDO_UID, which sudo itself sets), or the caller when run directly."""
    uid_text = os.environ.get("SUDO_UID", "")
    uid = int(uid_text) if os.geteuid() == 0 and re.fullmatch(r"[0-9]{1,10}", uid_text) else os.getuid()
    try:
        user = pwd.getpwuid(uid)
    except KeyError:
        raise EnvironmentProblem(f"uid {uid} has no account") from None
    if not _USER.fullmatch(user.pw_name):
        raise EnvironmentProblem(f"user name {user.pw_name!r} is not usable as a spool directory name")
    return user


def _open_dir(name: str, dir_fd: int | None = None) -> int:
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)


def _check_root_dir(fd: int, what: str, private: bool) -> None:
    st = os.fstat(fd)
    bad = stat.S_IWGRP | stat.S_IWOTH | ((stat.S_IRWXG | stat.S_IRWXO) if private else 0)
    if st.st_uid != 0 or st.st_mode & bad:
        raise EnvironmentProblem(f"{what} must be owned by root and not writable by others")


def open_spool(user: pwd.struct_passwd) -> tuple[int, int]:
    """Open (creating if needed) the root-only partial directory and the user's outbox; return both fds."""
    try:
        spool_fd = _open_dir(SPOOL_DIR)
    except OSError as exc:
        raise EnvironmentProblem(f"spool {SPOOL_DIR}: {exc.strerror}; run ollama-capture setup") from None
    try:
        if os.geteuid() == 0:
            _check_root_dir(spool_fd, SPOOL_DIR, private=False)
        for name, mode in ((".partial", 0o700), (user.pw_name, 0o700)):
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, mode, dir_fd=spool_fd)
                if name == user.pw_name:
                    fd = _open_dir(name, spool_fd)
                    os.fchown(fd, user.pw_uid, user.pw_gid)
                    os.close(fd)
        partial_fd = _open_dir(".partial", spool_fd)
        if os.geteuid() == 0:
            _check_root_dir(partial_fd, f"{SPOOL_DIR}/.partial", private=True)
        outbox_fd = _open_dir(user.pw_name, spool_fd)
        st = os.fstat(outbox_fd)
        if st.st_uid not in (0, user.pw_uid):
            raise EnvironmentProblem(f"{SPOOL_DIR}/{user.pw_name} has the wrong owner")
        return partial_fd, outbox_fd
    except OSError as exc:
        raise EnvironmentProblem(f"spool {SPOOL_DIR}: {exc}") from None
    finally:
        os.close(spool_fd)


def claim_slot(partial_fd: int, uid: int) -> tuple[int, str]:
    """Hold one of MAX_CONCURRENT per-user capture slots for the life of the process; return (fd, name)."""
    for slot in range(MAX_CONCURRENT):
        name = f"slot-{uid}-{slot}.lock"
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=partial_fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd, name
        except BlockingIOError:
            os.close(fd)
    raise EnvironmentProblem(f"already {MAX_CONCURRENT} captures running for this user")


def check_outbox(outbox_fd: int, where: str, max_files: int | None = None, max_bytes: int | None = None) -> None:
    """Refuse while the user's outbox already holds ``max_files`` entries or ``max_bytes`` bytes.

    The runner moves every snapshot out of the outbox as soon as the helper is done, so it normally holds
    nothing; a full outbox means snapshots are piling up (no runner, or a failing delivery), and every
    further capture would only add to the spool's file system.
    """
    max_files = MAX_OUTBOX_FILES if max_files is None else max_files
    max_bytes = MAX_OUTBOX_BYTES if max_bytes is None else max_bytes
    size = 0
    with os.scandir(outbox_fd) as entries:
        for files, entry in enumerate(entries, 1):
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode):
                    size += st.st_size
            if files >= max_files or size >= max_bytes:
                raise EnvironmentProblem(
                    f"outbox {where} is full: it holds {files} file(s), {size / 1024**2:.1f} MiB "
                    f"(limit {max_files} files or {max_bytes / 1024**2:.1f} MiB); nothing was captured. "
                    "ollama-capture moves each snapshot out of it right away, so these were not delivered: "
                    "move or delete them (they are yours) and try again"
                )


def capture_size_cap(free: int, promised: int = 0) -> int:
    """The most one capture may write: an equal share of what is free above the reserve, at most MAX_FILE_BYTES.

    ``free`` is the space available on the spool's file system, ``promised`` what running captures may still
    write. With MAX_CONCURRENT shares, captures started at any time together never take the file system
    below MIN_FREE_BYTES.
    """
    return max(0, min(MAX_FILE_BYTES, (free - MIN_FREE_BYTES - promised) // MAX_CONCURRENT))


def _still_to_write(text: str, partial_fd: int) -> int:
    """What a running capture with reservation ``text`` (``"LIMIT PARTIAL-NAME\\n"``) may still write."""
    match = _RESERVATION.fullmatch(text)
    if not match:  # not recorded (a helper from before reservations): assume the worst
        return MAX_FILE_BYTES
    limit = int(match.group(1))
    try:
        written = os.stat(match.group(2), dir_fd=partial_fd, follow_symlinks=False).st_size
    except OSError:  # not created yet, or just published: count the whole reservation
        written = 0
    return max(0, limit - written)


def promised_bytes(partial_fd: int, own_slot: str) -> int:
    """Sum of what the other running captures (all users) may still write, from their slot reservations."""
    total = 0
    with os.scandir(partial_fd) as entries:
        names = [e.name for e in entries if e.name != own_slot and _SLOT.fullmatch(e.name)]
    for name in names:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=partial_fd)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                continue  # nobody holds the slot: no capture running in it
            except BlockingIOError:
                pass
            total += _still_to_write(os.pread(fd, 200, 0).decode("ascii", "replace"), partial_fd)
        finally:
            os.close(fd)
    return total


def reserve_capture(partial_fd: int, uid: int, part_name: str) -> tuple[int, int]:
    """Claim a slot and work out this capture's size limit; record it in the slot. Return (slot fd, limit).

    Done under an exclusive lock on ``.partial`` so concurrent helpers see each other's reservations.
    """
    deadline = time.monotonic() + BUDGET_LOCK_WAIT
    while True:
        try:
            fcntl.flock(partial_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise EnvironmentProblem(f"{SPOOL_DIR}/.partial stayed locked by another capture") from None
            time.sleep(0.05)
    try:
        slot_fd, slot_name = claim_slot(partial_fd, uid)
        try:
            promised = promised_bytes(partial_fd, slot_name)
            vfs = os.fstatvfs(partial_fd)
            free = vfs.f_bavail * vfs.f_frsize
            limit = capture_size_cap(free, promised)
            if limit < MIN_CAPTURE_BYTES:
                raise EnvironmentProblem(
                    f"not enough free space in {SPOOL_DIR}: {free // 1024**2} MiB available, "
                    f"{MIN_FREE_BYTES // 1024**2} MiB kept free, {promised // 1024**2} MiB reserved by running captures"
                )
            os.ftruncate(slot_fd, 0)
            os.pwrite(slot_fd, f"{limit} {part_name}\n".encode("ascii"), 0)
        except BaseException:
            os.close(slot_fd)
            raise
        return slot_fd, limit
    finally:
        fcntl.flock(partial_fd, fcntl.LOCK_UN)


def sweep_partials(partial_fd: int) -> None:
    """Remove partial files left by a helper that was killed (older than any capture can last)."""
    cutoff = time.time() - MAX_DURATION - 3600
    for entry in os.scandir(partial_fd):
        if entry.name.endswith(".partial"):
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.name, dir_fd=partial_fd)


def whole_records(fd: int, size: int) -> tuple[int, int] | None:
    """(end offset, count) of the whole packet records at the start of a pcap file; None if not a pcap."""
    if size < 24:
        return None
    with mmap.mmap(fd, size, prot=mmap.PROT_READ) as data:
        magic = data[:4]
        if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            unpack = struct.Struct("<8xI4x").unpack_from
        elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
            unpack = struct.Struct(">8xI4x").unpack_from
        else:
            return None
        offset, count = 24, 0
        while offset + 16 <= size:
            (caplen,) = unpack(data, offset)
            if offset + 16 + caplen > size:
                break
            offset += 16 + caplen
            count += 1
    return offset, count


def run_tcpdump(argv: list[str], out_fd: int, duration: int, limit: int = MAX_FILE_BYTES) -> tuple[int, str, bool]:
    """Run tcpdump for ``duration`` seconds (or until SIGTERM/SIGINT/SIGHUP); return (rc, stderr, stopped).

    tcpdump cannot make its output larger than ``limit`` (RLIMIT_FSIZE). SIGXFSZ is ignored in it, so at the
    limit its writes fail with EFBIG and it keeps running until it is stopped, as usual.
    """

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    stopped = {"early": False}
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=out_fd,
        stderr=subprocess.PIPE,
        env=SAFE_ENV,
        close_fds=True,
        preexec_fn=limit_file_size,  # the helper is single-threaded, so preexec_fn is safe
    )

    def stop(signum: int, _frame: object) -> None:
        stopped["early"] = True
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    try:
        _, err = proc.communicate(timeout=duration)
    except subprocess.TimeoutExpired:
        # tcpdump in immediate mode reacts to SIGINT even when no packet ever arrives; SIGKILL is the backstop
        # (-U means the file is still a valid pcap up to the last whole packet).
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    return proc.returncode, err.decode("utf-8", "replace"), stopped["early"]


def publish(partial_fd: int, part_name: str, outbox_fd: int, name: str, pick_free: bool) -> str:
    """Hard-link the finished partial file under its final name (never replacing anything), drop the partial."""
    stem = name[: -len(".pcap")]
    for attempt in range(100 if pick_free else 1):
        final = name if attempt == 0 else f"{stem}-{attempt}.pcap"
        try:
            os.link(part_name, final, src_dir_fd=partial_fd, dst_dir_fd=outbox_fd, follow_symlinks=False)
        except FileExistsError:
            continue
        os.unlink(part_name, dir_fd=partial_fd)
        os.fsync(outbox_fd)
        return final
    raise EnvironmentProblem(f"{name} already exists in the spool")


def capture(args: list[str]) -> int:
    """The ``capture`` command: validate, run tcpdump, publish; print a JSON summary."""
    request = parse_capture_args(args, machine_interfaces())
    user = invoking_user()
    tcpdump = find_tcpdump()
    partial_fd, outbox_fd = open_spool(user)
    check_outbox(outbox_fd, f"{SPOOL_DIR}/{user.pw_name}")
    sweep_partials(partial_fd)
    started = time.time()
    name = request.name or time.strftime("ollama-%Y%m%dT%H%M%SZ.pcap", time.gmtime(started))
    part_name = f"{name}.{os.getpid()}.partial"
    _slot_fd, limit = reserve_capture(partial_fd, user.pw_uid, part_name)  # held until the process exits
    fd = os.open(
        part_name,
        os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
        dir_fd=partial_fd,
    )
    try:
        argv = tcpdump_argv(tcpdump, request.interface, list(request.ports), drop_user())
        rc, err, early = run_tcpdump(argv, fd, request.duration, limit)
        size = os.fstat(fd).st_size
        if size < 24 and early:  # stopped before tcpdump even wrote its header: nothing to keep
            os.unlink(part_name, dir_fd=partial_fd)
            print(json.dumps({"path": None, "discarded": True, "started": started}), flush=True)
            return EXIT_OK
        if size < 24:  # not even a pcap header: tcpdump failed to start
            sys.stderr.write(err[-4000:])
            raise EnvironmentProblem(f"tcpdump exited {rc} without writing a capture")
        limit_reached = size >= limit
        packets: int | None = None
        if limit_reached or rc == -signal.SIGKILL:  # the last packet may be cut off: keep whole records only
            whole = whole_records(fd, size)
            if whole is not None:
                end, packets = whole
                if end < size:
                    os.ftruncate(fd, end)
                    size = end
        os.fsync(fd)
        os.fchown(fd, user.pw_uid, user.pw_gid)
        os.fchmod(fd, 0o600)
        final = publish(partial_fd, part_name, outbox_fd, name, pick_free=request.name is None)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(part_name, dir_fd=partial_fd)
        raise
    finally:
        os.close(fd)
    match = re.search(r"(\d+) packets? captured", err)
    if packets is None and match and not limit_reached:
        packets = int(match.group(1))
    summary = {
        "path": f"{SPOOL_DIR}/{user.pw_name}/{final}",
        "bytes": size,
        "packets_captured": packets,
        "size_limit": limit,
        "size_limit_reached": limit_reached,
        "started": started,
        "seconds": round(time.time() - started, 3),
        "stopped_early": early,
        "tcpdump_exit": rc,
    }
    print(json.dumps(summary), flush=True)
    return EXIT_OK


def check() -> int:
    """The ``check`` command: report whether a capture could run, without capturing."""
    user = invoking_user()
    print(
        json.dumps(
            {
                "user": user.pw_name,
                "spool": SPOOL_DIR,
                "max_duration": MAX_DURATION,
                "max_outbox_files": MAX_OUTBOX_FILES,
                "max_outbox_bytes": MAX_OUTBOX_BYTES,
                "tcpdump": find_tcpdump(),
                "interfaces": sorted(machine_interfaces()),
            }
        ),
        flush=True,
    )
    return EXIT_OK


def main(argv: list[str]) -> int:
    """Entry point; returns the exit status."""
    try:
        if argv == ["check"]:
            return check()
        if argv[:1] == ["capture"]:
            return capture(argv[1:])
        if argv[:1] == ["powermetrics"]:
            return powermetrics(argv[1:])
        raise Refused(
            "usage: ollama-capture-helper check | capture --interface IF --duration S --port N ... "
            "| powermetrics --interval MS --duration S"
        )
    except Refused as exc:
        print(f"ollama-capture-helper: refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except EnvironmentProblem as exc:
        print(f"ollama-capture-helper: {exc}", file=sys.stderr)
        return EXIT_ENV
    except OSError as exc:
        print(f"ollama-capture-helper: {exc}", file=sys.stderr)
        return EXIT_CAPTURE


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
