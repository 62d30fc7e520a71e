"""Safe writes and removals inside the workdir: atomic, confined, and never rewriting
unchanged content.

Every removal orch makes in the workdir and the folder of every output it writes go through
`_open_folder`: it descends from the workdir one name at a time, each opened relative to its
parent's file descriptor with ``O_NOFOLLOW``, and follows a symlink only by starting again from
the workdir with the link's target, refused when that target lies outside. The file is then
removed with ``unlink(name, dir_fd=...)`` in the folder so opened, so a folder swapped for a
symlink after orch looked (by a step running meanwhile) cannot redirect it outside.

A file's content is written from bytes, or copied from another file in chunks and hashed as it
goes (`safe_write_file`, `Copy`): never held whole in memory, and renamed into place only when
it has the sha256 expected of it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import posixpath
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from orchestrator.core.errors import OrchError
from orchestrator.core.paths import NAME_MAX, PathRefused, cut, escapes_through_symlink, normalize
from orchestrator.store.digest import sha256_file, sha256_stream

WriteReason = Literal["created", "overwritten", "nochange"]
_UMASK = os.umask(0)
os.umask(_UMASK)
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_CHILD = _FOLDER | os.O_NOFOLLOW
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NOT_A_FOLDER = (errno.ELOOP, errno.EMLINK, errno.ENOTDIR)  # a symlink (per OS), or a file
_MAX_LINKS = 40  # as the kernel's own limit on symlinks in one path
_TEMP_STEM_BYTES = NAME_MAX - len("..XXXXXXXX.tmp")


class WriteRefused(OrchError):
    """A write or removal that would reach outside the workdir, or a write onto a folder."""


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
    return _safe_write(workdir, path, hashlib.sha256(data).hexdigest(), len(data), data)


def safe_write_file(
    workdir: Path, path: str, source: Path, expect_sha256: str | None = None
) -> WriteResult:
    """`safe_write` of the bytes of the file `source`, streamed in chunks.

    The copy is hashed as it is written and renamed into place only if its sha256 is
    `expect_sha256` (else that of `source` before the copy): DigestMismatch otherwise.
    """
    digest = expect_sha256 or sha256_file(source)
    return _safe_write(workdir, path, digest, source.stat().st_size, Copy(source, digest))


def _safe_write(
    workdir: Path, path: str, digest: str, size: int, content: bytes | Fill
) -> WriteResult:
    """Write `content` (`size` bytes whose sha256 is `digest`) to `path` unless it is there."""
    target = confined(workdir, path)
    relative = target.relative_to(workdir).as_posix()
    if target.is_dir():
        raise WriteRefused(f"'{relative}' is a folder")
    existed = target.exists()
    if existed and _same_content(target, digest, size):
        return WriteResult(relative, digest, size, wrote=False, reason="nochange")
    folder = _open_folder(workdir, posixpath.dirname(relative), relative, create=True)
    if folder is None:
        raise FileNotFoundError(errno.ENOENT, "its folder vanished as orch wrote it", relative)
    try:
        _write_in(folder, target.name, _filler(content))
    except OSError as exc:
        if _is_temp_name(exc.filename):
            exc.filename = relative  # name the file orch meant, not its temp file
        raise
    finally:
        os.close(folder)
    reason: WriteReason = "overwritten" if existed else "created"
    return WriteResult(relative, digest, size, wrote=True, reason=reason)


def _is_temp_name(name: object) -> bool:
    return isinstance(name, str) and name.startswith(".") and name.endswith(".tmp")


def _same_content(target: Path, digest: str, size: int) -> bool:
    """Whether `target` holds `size` bytes whose sha256 is `digest` (read only if the size is)."""
    try:
        return target.stat().st_size == size and sha256_file(target) == digest
    except OSError:
        return False


Fill = Callable[[BinaryIO], object]
"""Writes a new file's content into its open temp file."""


class DigestMismatch(OSError):
    """A file whose bytes, as copied, do not have the sha256 expected of them."""


@dataclass(frozen=True)
class Copy:
    """A `Fill` that copies the file `source` in chunks, hashing as it goes.

    Unless the bytes copied have the sha256 `expect`, it raises DigestMismatch, so the temp file
    is removed and the target left as it was.
    """

    source: Path
    expect: str

    def __call__(self, out: BinaryIO) -> None:
        with self.source.open("rb") as handle:
            found, _ = sha256_stream(handle, out)
        if found != self.expect:
            reason = "its bytes changed as orch copied them"
            raise DigestMismatch(errno.EIO, reason, str(self.source))


def _filler(content: bytes | Fill) -> Fill:
    """`content` as a `Fill`: bytes are written in one go."""
    if isinstance(content, bytes):
        return lambda out: out.write(content)
    return content


def atomic_write(target: Path, data: bytes | Fill, *, durable: bool = True) -> None:
    """Replace `target` with `data` (bytes, or a `Fill` such as a `Copy` of a file) so readers
    see the old file or the new one, never a part.

    `durable` also waits for the data to reach the disk (fsync of the file and its folder);
    state that verifies itself when read back, such as the cache, can do without. A signal
    waits for the write to end, so no temp file is left behind (any error removes it too).
    """
    from orchestrator.core.interrupt import held

    with held():
        _replace(target, _filler(data), durable)


def _replace(target: Path, fill: Fill, durable: bool) -> None:
    import tempfile

    prefix = f".{temp_stem(target.name)}."
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=".tmp")
    try:
        os.fchmod(fd, _mode_for(target))
        with os.fdopen(fd, "wb") as handle:
            fill(handle)
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


def _write_in(folder: int, name: str, fill: Fill) -> None:
    """`atomic_write` of the file `name` in the folder open at `folder`: the temp file, the
    rename and the fsyncs all go through the descriptor, so the folder cannot be swapped for
    a symlink between the check and the write."""
    fd, temp = _temp_in(folder, name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), _mode_in(folder, name))
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=folder)
        raise
    with contextlib.suppress(OSError):
        os.fsync(folder)


def temp_stem(name: str) -> str:
    """The NAME of the temp files `.NAME.XXXXXXXX.tmp` that replace the file `name`: the name
    itself, cut short when the temp name would pass NAME_MAX bytes."""
    return cut(name, _TEMP_STEM_BYTES)


def _temp_in(folder: int, name: str) -> tuple[int, str]:
    """A new temp file `.NAME.XXXXXXXX.tmp` (as `atomic_write` names them) in `folder`."""
    while True:
        temp = f".{temp_stem(name)}.{os.urandom(4).hex()}.tmp"
        try:
            return os.open(temp, _NEW_FILE, 0o600, dir_fd=folder), temp
        except FileExistsError:
            continue


def _mode_in(folder: int, name: str) -> int:
    """`_mode_for` the file `name` in `folder`."""
    try:
        return os.stat(name, dir_fd=folder).st_mode & 0o7777
    except OSError:
        return 0o666 & ~_UMASK


# --------------------------------------------------------------------------- confined removal


def confined_makedirs(workdir: Path, folder: str, meant: str | None = None) -> None:
    """Make the workdir-relative `folder` and its parents, like ``mkdir -p``, never through a
    symlink leading outside the workdir (WriteRefused naming `meant`, else the folder)."""
    normal = _normal(folder)
    fd = _open_folder(workdir, normal, meant or normal, create=True)
    if fd is not None:
        os.close(fd)


def confined_unlink(workdir: Path, path: str) -> bool:
    """Remove the file (or symlink) at the workdir-relative `path`; whether one was there.

    WriteRefused, naming the path, when a folder on the way leads outside the workdir.
    """
    return _remove_in_folder(workdir, _normal(path), os.unlink, FileNotFoundError)


def confined_rmdir(workdir: Path, path: str) -> bool:
    """Remove the folder `path` if it is empty; whether it was removed (never through a
    symlink leading outside: WriteRefused)."""
    # gone, not empty, or not a folder: not removed
    return _remove_in_folder(workdir, _normal(path).rstrip("/"), os.rmdir, OSError)


def _remove_in_folder(
    workdir: Path, relative: str, remove: Callable[..., None], missed: type[OSError]
) -> bool:
    """`remove(name, dir_fd=...)` in the folder of `relative`, opened confined; False if the
    folder is not there or `remove` raised `missed`."""
    folder = _open_folder(workdir, posixpath.dirname(relative), relative)
    if folder is None:
        return False
    try:
        remove(posixpath.basename(relative), dir_fd=folder)
    except missed:
        return False
    finally:
        os.close(folder)
    return True


def confined_tree(workdir: Path, path: str) -> tuple[list[str], list[str]]:
    """The folders (`path` first, each ending in ``/``) and the files under the folder `path`,
    as sorted workdir-relative paths; empty if it is not there.

    Symlinks inside are listed as files, never followed. WriteRefused when `path` itself
    leads outside the workdir.
    """
    relative = _normal(path).rstrip("/")
    root = _open_folder(workdir, relative, relative)
    folders: list[str] = []
    files: list[str] = []
    if root is not None:
        try:
            _list(root, relative, folders, files)
        finally:
            os.close(root)
    return folders, sorted(files)


def _list(fd: int, prefix: str, folders: list[str], files: list[str]) -> None:
    folders.append(prefix + "/")
    with os.scandir(fd) as entries:
        names = sorted((entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries)
    for name, is_folder in names:
        child = _open_child(fd, name, create=False) if is_folder else None
        if isinstance(child, int):
            try:
                _list(child, f"{prefix}/{name}", folders, files)
            finally:
                os.close(child)
        elif child is not None or not is_folder:
            files.append(f"{prefix}/{name}")


def _normal(path: str) -> str:
    try:
        return normalize(path)
    except PathRefused as exc:
        raise WriteRefused(str(exc)) from exc


@dataclass(frozen=True)
class _Link:
    """A symlink met on the way down: the folders before it, its name and its target."""

    walked: tuple[str, ...]
    name: str
    target: str
    rest: tuple[str, ...]


def _open_folder(workdir: Path, folder: str, path: str, *, create: bool = False) -> int | None:
    """A descriptor of the workdir-relative `folder`, reached without following a symlink out
    of the workdir; None when it is missing or not a folder (made when `create`).

    WriteRefused naming `path` when a symlink on the way leads outside.
    """
    root = os.path.realpath(workdir)
    parts = tuple(part for part in folder.split("/") if part not in ("", "."))
    for _ in range(_MAX_LINKS):
        found = _descend(root, parts, create)
        if not isinstance(found, _Link):
            return found
        parts = _retarget(root, workdir, found, path)
    raise WriteRefused(f"'{path}': too many levels of symlinks")


def _descend(root: str, parts: tuple[str, ...], create: bool) -> int | _Link | None:
    """Open `parts` from `root` one name at a time; the last folder, a symlink met, or None."""
    fd = os.open(root, _FOLDER)
    for index, name in enumerate(parts):
        try:
            child = _open_child(fd, name, create)
        finally:
            os.close(fd)
        if not isinstance(child, int):
            if child is None:
                return None
            return _Link(parts[:index], name, child, parts[index + 1 :])
        fd = child
    return fd


def _open_child(fd: int, name: str, create: bool) -> int | str | None:
    """The folder `name` inside the one open at `fd`: its descriptor, its target if it is a
    symlink, or None if missing (made when `create`) or not a folder."""
    try:
        return os.open(name, _CHILD, dir_fd=fd)
    except FileNotFoundError:
        if not create:
            return None
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, dir_fd=fd)
        return _open_child(fd, name, create=False)
    except OSError as exc:
        if exc.errno not in _NOT_A_FOLDER:
            raise
        try:
            return os.readlink(name, dir_fd=fd)
        except OSError:
            if create:
                raise NotADirectoryError(errno.ENOTDIR, "not a folder", name) from exc
            return None


def _retarget(root: str, workdir: Path, link: _Link, path: str) -> tuple[str, ...]:
    """The workdir-relative parts a symlink leads to, followed by the rest of the path;
    WriteRefused when it leads outside."""
    if posixpath.isabs(link.target):
        target = posixpath.normpath(link.target)
        base = next((b for b in (root, os.path.abspath(workdir)) if _under(target, b)), None)
        if base is None:
            raise _outside(link, path)
        inside = posixpath.relpath(target, base)
    else:
        inside = posixpath.normpath(posixpath.join(*link.walked, link.target))
        if inside == ".." or inside.startswith("../"):
            raise _outside(link, path)
    return (*(part for part in inside.split("/") if part not in ("", ".")), *link.rest)


def _outside(link: _Link, path: str) -> WriteRefused:
    name = "/".join((*link.walked, link.name))
    return WriteRefused(
        f"'{path}' leads outside the workdir through the symlink '{name}' (to {link.target})"
    )


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")
