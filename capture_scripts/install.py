"""``ollama-capture setup``: install the root-owned helper, the sudoers drop-in and the spool.

Everything is planned first (:func:`plan_setup`) so ``--print`` can show exactly the files that would be
written, then applied (:func:`apply_setup`). The sudoers drop-in is validated with ``visudo -c -f`` before it
is moved into place, and the whole sudoers configuration is checked again afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import grp
import os
import pwd
import re
import shutil
import stat
import struct
import subprocess
import sys
from importlib import resources
from pathlib import Path

from capture_scripts.config import DEFAULT_HELPER, DEFAULT_PORTS, DEFAULT_SPOOL, HELPER_MAX_DURATION

SUDOERS_DIR = Path("/etc/sudoers.d")
SYSTEM_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3")
CAPTURE_TOOLS = ("/usr/bin/dumpcap", "/usr/sbin/dumpcap", "/usr/bin/tcpdump", "/usr/sbin/tcpdump")
_USER_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}\$?", re.IGNORECASE)
CAP_NET_RAW = 13
DEFAULT_MAX_OUTBOX_FILES = 200
DEFAULT_MAX_OUTBOX_BYTES = 2 * 1024**3
PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
RESERVED_PORTS_FILE = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")


class SetupError(Exception):
    """Setup cannot proceed; the message says why."""


@dataclasses.dataclass
class PlannedFile:
    """One file setup writes: final path, content, mode, owner."""

    path: Path
    content: str
    mode: int
    uid: int = 0
    gid: int = 0


@dataclasses.dataclass
class PlannedDir:
    """One directory setup creates."""

    path: Path
    mode: int
    uid: int = 0
    gid: int = 0


@dataclasses.dataclass
class SetupPlan:
    """All files and directories of one installation, plus notes for the user."""

    user: pwd.struct_passwd
    helper: PlannedFile
    sudoers: PlannedFile
    dirs: list[PlannedDir]
    notes: list[str]
    ephemeral_ports: list[int] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def describe(self) -> str:
        """Human-readable listing with every file's full content (``setup --print``)."""
        lines = []
        for d in self.dirs:
            lines.append(f"# directory {d.path}  mode {d.mode:04o}  owner {d.uid}:{d.gid}")
        for f in (self.helper, self.sudoers):
            lines.append(f"# ===== file {f.path}  mode {f.mode:04o}  owner {f.uid}:{f.gid} =====")
            lines.append(f.content.rstrip("\n"))
        lines.extend(f"# note: {note}" for note in self.notes)
        lines.extend(f"# warning: {warning}" for warning in self.warnings)
        return "\n".join(lines) + "\n"


def template(name: str) -> str:
    """Read a packaged template (``capture_scripts/templates/NAME``)."""
    return resources.files("capture_scripts").joinpath(f"templates/{name}").read_text(encoding="utf-8")


def helper_source() -> str:
    """The helper program's source as shipped in the package."""
    return resources.files("capture_scripts").joinpath("helper.py").read_text(encoding="utf-8")


def render_helper(
    spool_dir: Path,
    max_duration: int,
    python: str,
    ports: tuple[int, ...] = DEFAULT_PORTS,
    max_outbox_files: int = DEFAULT_MAX_OUTBOX_FILES,
    max_outbox_bytes: int = DEFAULT_MAX_OUTBOX_BYTES,
) -> str:
    """The helper with its shebang and settings block filled in for this installation."""
    source = helper_source()
    body = source.split("\n", 1)[1]
    allowed = tuple(sorted({int(p) for p in ports}))
    settings = (
        f"SPOOL_DIR = {str(spool_dir)!r}\nMAX_DURATION = {int(max_duration)}\nALLOWED_PORTS = {allowed!r}\n"
        f"MAX_OUTBOX_FILES = {int(max_outbox_files)}\nMAX_OUTBOX_BYTES = {int(max_outbox_bytes)}\n"
    )
    body, count = re.subn(
        r"(# --- settings written by `ollama-capture setup` ---\n).*?(# --- end of settings ---)",
        lambda m: m.group(1) + settings + m.group(2),
        body,
        count=1,
        flags=re.DOTALL,
    )
    if count != 1:
        raise SetupError("helper source has no settings block")
    return f"#!{python} -I\n{body}"


def sudoers_file_name(user: str) -> str:
    """Drop-in name sudo reads: no ``.`` and no trailing ``~`` (sudo skips such files)."""
    return "ollama-capture-" + re.sub(r"[^A-Za-z0-9_-]", "_", user)


def render_sudoers(
    user: str, helper: Path, spool_dir: Path, max_duration: int, ports: tuple[int, ...] = DEFAULT_PORTS
) -> str:
    """The sudoers drop-in for ``user``."""
    if not _USER_NAME.fullmatch(user):
        raise SetupError(f"user name {user!r} cannot be written into a sudoers rule safely")
    if not re.fullmatch(r"/[A-Za-z0-9_./-]+", str(helper)) or ".." in helper.parts:
        raise SetupError(f"helper path {helper} must be a plain absolute path")
    text = template("ollama-capture.sudoers")
    for key, value in {
        "@USER@": user,
        "@ALIAS@": "OLLAMA_CAPTURE_" + re.sub(r"[^A-Z0-9]", "_", user.upper()),
        "@HELPER@": str(helper),
        "@SPOOL@": str(spool_dir),
        "@MAX_DURATION@": str(max_duration),
        "@PORTS@": ", ".join(str(p) for p in sorted(set(ports))),
    }.items():
        text = text.replace(key, value)
    return text


def _parse_port_list(text: str) -> set[int]:
    """``"8080,9000-9002"`` (the ``ip_local_reserved_ports`` format) → {8080, 9000, 9001, 9002}."""
    ports: set[int] = set()
    for part in text.replace("\n", ",").split(","):
        low, _, high = part.strip().partition("-")
        if low.isdigit() and (not high or high.isdigit()):
            ports.update(range(int(low), int(high or low) + 1))
    return ports


def ephemeral_port_range() -> tuple[int, int] | None:
    """The range the kernel picks local ports of outgoing connections from (None if unknown)."""
    if PORT_RANGE_FILE.exists():
        with contextlib.suppress(OSError, ValueError):
            low, high = PORT_RANGE_FILE.read_text(encoding="ascii").split()
            return int(low), int(high)
        return None
    if sys.platform == "darwin":
        with contextlib.suppress(OSError, ValueError, subprocess.SubprocessError):
            out = subprocess.run(
                ["/usr/sbin/sysctl", "-n", "net.inet.ip.portrange.first", "net.inet.ip.portrange.last"],
                capture_output=True, text=True, timeout=10, check=True,
            ).stdout.split()  # fmt: skip
            return int(out[0]), int(out[1])
    return None


def ephemeral_ports(ports: tuple[int, ...]) -> list[int]:
    """The ports among ``ports`` the kernel may hand out as local ports of unrelated outgoing connections.

    ``tcp port N`` matches either end of a connection, so allowing such a port would let the user capture any
    connection that happens to get N as its source port. Ports in ``ip_local_reserved_ports`` are never handed
    out and are fine.
    """
    span = ephemeral_port_range()
    if span is None:
        return []
    reserved: set[int] = set()
    with contextlib.suppress(OSError):
        reserved = _parse_port_list(RESERVED_PORTS_FILE.read_text(encoding="ascii"))
    return sorted({p for p in ports if span[0] <= p <= span[1] and p not in reserved})


def ephemeral_port_message(ports: list[int]) -> str:
    """Why allowing ``ports`` (from :func:`ephemeral_ports`) is a problem, for the refusal or the warning."""
    span = ephemeral_port_range() or (0, 0)
    listed = ", ".join(map(str, ports))
    return (
        f"port {listed} is in this machine's ephemeral port range {span[0]}-{span[1]} "
        f"(net.ipv4.ip_local_port_range): 'tcp port {ports[0]}' also matches other users' unrelated connections "
        "that happen to get it as their local port, so the rule would let this user capture them"
    )


def find_system_python() -> str:
    """A root-owned system python3 (the helper must not run under a user-writable interpreter)."""
    for path in SYSTEM_PYTHONS:
        with contextlib.suppress(OSError):
            real = os.path.realpath(path)
            st = os.stat(real)
            if st.st_uid == 0 and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                return path
    raise SetupError(f"no root-owned python3 among {', '.join(SYSTEM_PYTHONS)}")


def check_root_chain(path: Path) -> None:
    """Every existing directory from ``/`` down to ``path`` must be root-owned and not group/world-writable."""
    for parent in [*reversed(path.parents), path]:
        try:
            st = os.lstat(parent)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            raise SetupError(f"{parent} is a symbolic link; give the real path")
        sticky = bool(st.st_mode & stat.S_ISVTX)
        if st.st_uid != 0 or (st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky):
            raise SetupError(f"{parent} must be owned by root and writable only by root")


def _caps_allow_raw(path: str) -> bool:
    try:
        data = os.getxattr(path, "security.capability")
    except OSError:
        return False
    if len(data) < 12:
        return False
    magic, permitted = struct.unpack_from("<II", data)
    return bool(magic & 1) and bool(permitted & (1 << CAP_NET_RAW))


def _user_can_exec(user: pwd.struct_passwd, st: os.stat_result) -> bool:
    if st.st_uid == user.pw_uid:
        return bool(st.st_mode & stat.S_IXUSR)
    groups = {user.pw_gid} | {g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem}
    if st.st_gid in groups:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def direct_capture_tool(user: pwd.struct_passwd | None = None) -> str | None:
    """A capture program ``user`` (default: the current user) can run without sudo, or None.

    Linux: dumpcap/tcpdump with ``cap_net_raw`` in its file capabilities that the user may execute (Wireshark's
    ``wireshark`` group). macOS: ``/dev/bpf0`` readable and writable by the user (Wireshark's ChmodBPF).
    """
    if user is None:
        user = pwd.getpwuid(os.getuid())
    if user.pw_uid == 0:
        return next((t for t in CAPTURE_TOOLS if os.path.exists(t) and "tcpdump" in t), None)
    if sys.platform == "darwin":
        with contextlib.suppress(OSError):
            st = os.stat("/dev/bpf0")
            groups = {user.pw_gid} | {g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem}
            if st.st_gid in groups and st.st_mode & stat.S_IRGRP and st.st_mode & stat.S_IWGRP:
                return "/usr/sbin/tcpdump"
        return None
    for tool in CAPTURE_TOOLS:
        with contextlib.suppress(OSError):
            if _caps_allow_raw(tool) and _user_can_exec(user, os.stat(tool)):
                return tool
    return None


def plan_setup(
    user_name: str,
    helper: Path = Path(DEFAULT_HELPER),
    spool_dir: Path = Path(DEFAULT_SPOOL),
    sudoers_dir: Path = SUDOERS_DIR,
    max_duration: int = HELPER_MAX_DURATION,
    ports: tuple[int, ...] = DEFAULT_PORTS,
    max_outbox_files: int = DEFAULT_MAX_OUTBOX_FILES,
    max_outbox_bytes: int = DEFAULT_MAX_OUTBOX_BYTES,
) -> SetupPlan:
    """Work out everything setup would write for ``user_name``; writes nothing.

    Ports in the ephemeral range are listed in ``plan.ephemeral_ports`` (with a warning); the ``setup``
    command refuses them unless ``--allow-ephemeral-port`` is given.
    """
    try:
        user = pwd.getpwnam(user_name)
    except KeyError:
        raise SetupError(f"no such user: {user_name}") from None
    if user.pw_uid == 0:
        raise SetupError("root needs no sudo rule; give the account that runs the captures")
    if not 1 <= max_duration <= HELPER_MAX_DURATION:
        raise SetupError(f"--max-duration must be between 1 and {HELPER_MAX_DURATION}")
    if not ports or not all(1 <= int(p) <= 65535 for p in ports):
        raise SetupError("--port must be between 1 and 65535")
    if max_outbox_files < 1 or max_outbox_bytes < 1:
        raise SetupError("--max-outbox-files and --max-outbox-bytes must be positive")
    for path in (helper, spool_dir, sudoers_dir):
        if not path.is_absolute() or ".." in path.parts:
            raise SetupError(f"{path} must be an absolute path without '..'")
    python = find_system_python()
    helper_file = PlannedFile(
        helper, render_helper(spool_dir, max_duration, python, ports, max_outbox_files, max_outbox_bytes), 0o755
    )
    sudoers = PlannedFile(
        sudoers_dir / sudoers_file_name(user.pw_name),
        render_sudoers(user.pw_name, helper, spool_dir, max_duration, ports),
        0o440,
    )
    dirs = [
        PlannedDir(helper.parent, 0o755),
        PlannedDir(spool_dir, 0o755),
        PlannedDir(spool_dir / ".partial", 0o700),
        PlannedDir(spool_dir / user.pw_name, 0o700, user.pw_uid, user.pw_gid),
    ]
    allowed = ", ".join(map(str, sorted(set(ports))))
    notes = [f"{user.pw_name} may run: sudo -n {helper} capture --interface IF --duration S --port N ({allowed})"]
    tool = direct_capture_tool(user)
    if tool:
        notes.append(
            f"{user.pw_name} can already capture without sudo through {tool}; "
            "the runner uses that (method: auto) and the sudo rule is only a fallback"
        )
    notes.append(
        f"a capture is refused while {spool_dir / user.pw_name} holds {max_outbox_files} files or "
        f"{max_outbox_bytes} bytes (the runner normally empties it after every snapshot)"
    )
    risky = ephemeral_ports(ports)
    warnings = [ephemeral_port_message(risky)] if risky else []
    return SetupPlan(user, helper_file, sudoers, dirs, notes, risky, warnings)


def _write_atomic(planned: PlannedFile, temp_name: str) -> None:
    tmp = planned.path.parent / temp_name
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, planned.content.encode("utf-8"))
        os.fchown(fd, planned.uid, planned.gid)
        os.fchmod(fd, planned.mode)
        os.fsync(fd)
    finally:
        os.close(fd)


def _visudo() -> str:
    candidates = ("/usr/sbin/visudo", "/usr/bin/visudo")
    found = shutil.which("visudo") or next((p for p in candidates if os.path.exists(p)), None)
    if not found:
        raise SetupError("visudo not found; is sudo installed?")
    return found


def apply_setup(plan: SetupPlan) -> list[str]:
    """Create the directories, install the helper and the validated sudoers drop-in; return log lines."""
    if os.geteuid() != 0:
        raise SetupError("setup must run as root (sudo ollama-capture setup --user NAME)")
    done: list[str] = []
    for d in plan.dirs:
        check_root_chain(d.path.parent)
        d.path.mkdir(mode=d.mode, parents=True, exist_ok=True)
        st = os.lstat(d.path)
        if not stat.S_ISDIR(st.st_mode):
            raise SetupError(f"{d.path} exists and is not a directory")
        os.chown(d.path, d.uid, d.gid, follow_symlinks=False)
        os.chmod(d.path, d.mode)
        done.append(f"directory {d.path} ({d.mode:04o})")
    check_root_chain(plan.helper.path.parent)
    check_root_chain(plan.sudoers.path.parent)

    _write_atomic(plan.helper, f".{plan.helper.path.name}.new")
    os.replace(plan.helper.path.parent / f".{plan.helper.path.name}.new", plan.helper.path)
    done.append(f"helper {plan.helper.path} (root, {plan.helper.mode:04o})")

    # The temporary name contains a '.', so sudo ignores it even if we die before the rename.
    tmp_name = f".{plan.sudoers.path.name}.tmp"
    _write_atomic(plan.sudoers, tmp_name)
    tmp = plan.sudoers.path.parent / tmp_name
    visudo = _visudo()
    check = subprocess.run([visudo, "-c", "-q", "-f", str(tmp)], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        tmp.unlink()
        raise SetupError(f"visudo rejected the drop-in: {(check.stderr or check.stdout).strip()}")
    os.replace(tmp, plan.sudoers.path)
    done.append(f"sudoers {plan.sudoers.path} (0440, checked with visudo -c -f)")
    whole = subprocess.run([visudo, "-c"], capture_output=True, text=True, check=False)
    if whole.returncode != 0 and plan.sudoers.path.parent == SUDOERS_DIR:
        plan.sudoers.path.unlink()
        problem = (whole.stderr or whole.stdout).strip().splitlines()[:1]
        raise SetupError(f"sudoers no longer parses, drop-in removed: {' '.join(problem)}")
    return done + plan.notes


def uninstall(plan: SetupPlan, remove_spool: bool = False) -> list[str]:
    """Remove the user's sudoers drop-in (and the helper and spool when no other drop-in uses them)."""
    if os.geteuid() != 0:
        raise SetupError("uninstall must run as root")
    done = []
    if plan.sudoers.path.exists():
        plan.sudoers.path.unlink()
        done.append(f"removed {plan.sudoers.path}")
    others = [
        p
        for p in plan.sudoers.path.parent.glob("ollama-capture-*")
        if str(plan.helper.path) in p.read_text(encoding="utf-8", errors="replace")
    ]
    if others:
        done.append(f"kept {plan.helper.path}: still used by {', '.join(map(str, others))}")
        return done
    if plan.helper.path.exists():
        plan.helper.path.unlink()
        done.append(f"removed {plan.helper.path}")
    with contextlib.suppress(OSError):
        plan.helper.path.parent.rmdir()
    spool = plan.dirs[1].path
    if remove_spool and spool.exists():
        shutil.rmtree(spool)
        done.append(f"removed {spool}")
    elif spool.exists():
        done.append(f"kept {spool} (snapshots may remain; remove it yourself or pass --remove-spool)")
    return done
