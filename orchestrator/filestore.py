"""Safe writes inside the workdir: atomic, confined, and never rewriting unchanged content."""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import OrchError
from .paths import PathRefused, escapes_through_symlink, normalize

WriteReason = Literal["created", "overwritten", "nochange"]
_UMASK = os.umask(0)
os.umask(_UMASK)


class WriteRefused(OrchError):
    """A write that would land outside the workdir, or onto a folder."""


@dataclass(frozen=True)
class WriteResult:
    """What `safe_write` did: the data of a ``file.written`` event."""

    path: str
    sha256: str
    size_bytes: int
    wrote: bool
    reason: WriteReason

    def as_event_data(self) -> dict[str, Any]:
        """The fields of the ``file.written`` event."""
        return asdict(self)


def confined(workdir: Path, path: str) -> Path:
    """The absolute path of a workdir-relative `path`, or WriteRefused if it leads outside."""
    try:
        normal = normalize(path)
    except PathRefused as exc:
        raise WriteRefused(str(exc)) from exc
    if escapes_through_symlink(workdir, normal):
        raise WriteRefused(f"'{normal}' leads outside the workdir through a symlink")
    return workdir / normal


def safe_write(workdir: Path, path: str, content: bytes | str) -> WriteResult:
    """Write `content` to `path` atomically (temp file, fsync, rename) unless it is unchanged."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    target = confined(workdir, path)
    relative = target.relative_to(workdir).as_posix()
    digest = hashlib.sha256(data).hexdigest()
    if target.is_dir():
        raise WriteRefused(f"'{relative}' is a folder")
    existed = target.exists()
    if existed and _same_content(target, data):
        return WriteResult(relative, digest, len(data), wrote=False, reason="nochange")
    target.parent.mkdir(parents=True, exist_ok=True)
    if escapes_through_symlink(workdir, relative):
        raise WriteRefused(f"'{relative}' leads outside the workdir through a symlink")
    atomic_write(target, data)
    reason: WriteReason = "overwritten" if existed else "created"
    return WriteResult(relative, digest, len(data), wrote=True, reason=reason)


def _same_content(target: Path, data: bytes) -> bool:
    try:
        if target.stat().st_size != len(data):
            return False
        return target.read_bytes() == data
    except OSError:
        return False


def atomic_write(target: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace `target` with `data` so readers see the old file or the new one, never a part.

    `durable` also waits for the data to reach the disk (fsync of the file and its folder);
    state that verifies itself when read back, such as the cache, can do without. A signal
    waits for the write to end, so no temp file is left behind (any error removes it too).
    """
    from .interrupt import held

    with held():
        _replace(target, data, durable)


def _replace(target: Path, data: bytes, durable: bool) -> None:
    import tempfile

    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _mode_for(target))
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_folder(target.parent)


def _mode_for(target: Path) -> int:
    """Keep an existing file's permissions; new files get the usual 0o666 less the umask."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_UMASK


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
