"""Crash-safe file writing: every file garasam writes goes through a temp file and a rename."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from garasam.errors import WriteError

# Errors by which a disk refuses a write, as opposed to a bug or a bad input.
DISK_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EFBIG,
    errno.EIO,
}
# Writers that hide the errno: NumPy ("393216 requested and 139136 written"), torch.save ("unexpected
# pos 704 vs 598"), safetensors ("I/O error: No space left on device (os error 28)").
_SHORT_WRITE = re.compile(r"requested and \d+ written|unexpected pos \d+|I/O error|os error \d+")
MIN_FREE_BYTES = 32 * 2**20  # what an output folder must have free before work starts


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds.

    A kill at any moment leaves either the old file or the complete new one, never half a file.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    except OSError as err:  # no folder (a file in its place), no permission, no room
        raise WriteError(f"cannot write {target}: {_why_no_folder(target.parent, err)}") from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp's file is private (0600); a plain open's is not
        os.replace(tmp_path, target)
    except Exception as err:
        refusal = disk_refusal(target, err)
        if refusal is None:
            raise
        raise refusal from None
    finally:
        tmp_path.unlink(missing_ok=True)


def disk_refusal(path: str | os.PathLike, err: BaseException) -> WriteError | None:
    """A WriteError naming `path` and the cause when `err` is the disk refusing a write, else None.

    Writers that hide the errno (NumPy, torch.save, safetensors) are diagnosed from the disk itself."""
    path = Path(path)
    if isinstance(err, OSError) and err.errno in DISK_ERRNOS:
        cause = err.strerror or str(err)
    elif isinstance(err, (OSError, RuntimeError)) or type(err).__name__ == "SafetensorError":
        if not _SHORT_WRITE.search(str(err)):
            return None
        cause = _diagnose(path.parent, err)
    else:
        return None
    return WriteError(f"cannot write {path}: {cause}")


def _diagnose(folder: Path, err: BaseException) -> str:
    """Why a write stopped short, asked of the disk: full, read-only, or (else) the writer's words."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("/"))
    with contextlib.suppress(OSError):
        if shutil.disk_usage(existing).free < 2**20:
            return os.strerror(errno.ENOSPC)
        if os.statvfs(existing).f_flag & os.ST_RDONLY:
            return os.strerror(errno.EROFS)
    return f"the write failed ({err})"


def _why_no_folder(folder: Path, err: OSError) -> str:
    """`err`'s cause, or the file that stands where `folder` or one of its parents should be."""
    for path in (folder, *folder.parents):
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                return f"{path} is a file, not a folder"
            break
    return err.strerror or str(err)


def check_writable(folder: str | os.PathLike, min_free_bytes: int = MIN_FREE_BYTES) -> Path:
    """Create `folder` and prove it takes a file and has room, before the work that fills it starts
    (an unwritable folder found after hours of evaluation loses every result)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as probe:
            probe.write(b"garasam")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as err:
        raise WriteError(f"cannot write in {folder}: {_why_no_folder(folder, err)}") from None
    free = shutil.disk_usage(folder).free
    if free < min_free_bytes:
        raise WriteError(
            f"cannot write in {folder}: only {free / 2**20:.1f} MiB free on its disk "
            f"(at least {min_free_bytes / 2**20:.0f} MiB needed); free some space or choose another folder"
        )
    return folder


def _umask() -> int:
    """The process umask (read, not changed, where /proc tells it; set and restored elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def save_safetensors(tensors: dict, path: str | os.PathLike, metadata: dict[str, str]) -> str:
    """Write `tensors` to a safetensors file atomically, byte for byte the same on every run; returns
    its sha256.

    safetensors keeps its metadata in a hash map whose order changes from one process to the next,
    so the same weights gave different files (and digests); the metadata is sorted in the header."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
        with open(tmp, "r+b") as handle:
            size = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(size))
            header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
            text = json.dumps(header, separators=(",", ":")).encode()
            if len(text) <= size:  # the same keys and values in another order: never longer
                handle.seek(8)
                handle.write(text.ljust(size, b" "))  # safetensors pads its header with spaces too
        return file_sha256(tmp)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in chunks (checkpoints are gigabytes)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def remove_stale_temp_files(root: str | os.PathLike) -> None:
    """Temp files a killed run left behind under `root` (`.<name>.<random>.tmp`, see atomic_path)."""
    for dirpath, _, filenames in os.walk(root):
        for filename in filenames:
            if filename.startswith(".") and filename.endswith(".tmp"):
                Path(dirpath, filename).unlink(missing_ok=True)
