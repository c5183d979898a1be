"""The files a user downloaded, archives (zip, tar, tar.gz) and folders alike, addressed by their path
inside them, so a converter never cares whether `val2017/` was unpacked.

Zip members are read in place (random access). Tar archives cannot be read member by member without
decompressing from the start each time, so each is unpacked once into `<out>/.sources/` (resumable:
a finished unpack leaves a marker) and then read as a folder.
"""

from __future__ import annotations

import os
import re
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from garasam.errors import DataError
from garasam.io import disk_refusal, file_sha256

UNPACKED = ".unpacked"


@dataclass(frozen=True)
class Member:
    """One file: in a zip archive (`archive` set) or on disk (`path`)."""

    name: str  # path inside its source, '/'-separated
    path: Path  # the file on disk, or the zip archive holding it
    in_zip: bool


class SourceTree:
    """Every file of the sources by its inner path (`val2017/000000000139.jpg`); when two sources hold
    the same inner path, the first source given wins."""

    def __init__(self, sources: list[Path], staging: Path) -> None:
        self.sources = sources
        self.members: dict[str, Member] = {}
        self._zips: dict[Path, zipfile.ZipFile] = {}
        for source in sources:
            if not source.exists():
                raise DataError(f"{source}: no such file or folder")
            if source.is_dir():
                self._add_folder(source)
            elif zipfile.is_zipfile(source):
                self._add_zip(source)
            elif _is_tar(source):
                self._add_folder(_unpack_tar(source, staging))
            else:
                raise DataError(
                    f"{source}: neither a folder nor a zip or tar archive (a truncated download?)"
                )

    def _add_folder(self, root: Path) -> None:
        for dirpath, _, filenames in os.walk(root):
            for filename in filenames:
                if filename == UNPACKED or filename.startswith("."):
                    continue
                path = Path(dirpath) / filename
                name = path.relative_to(root).as_posix()
                self.members.setdefault(name, Member(name, path, in_zip=False))

    def _add_zip(self, archive: Path) -> None:
        try:
            with zipfile.ZipFile(archive) as handle:
                names = [info.filename for info in handle.infolist() if not info.is_dir()]
        except (zipfile.BadZipFile, OSError) as err:
            raise DataError(f"{archive}: unreadable zip archive ({err})") from None
        for name in names:
            clean = PurePosixPath(name).as_posix()
            if clean.startswith("__MACOSX/") or PurePosixPath(clean).name.startswith("."):
                continue
            self.members.setdefault(clean, Member(clean, archive, in_zip=True))

    def find(self, pattern: str) -> list[str]:
        """Inner paths matching a glob (`**/` matches any folders, also none), sorted."""
        regex = _glob_regex(pattern)
        return sorted(name for name in self.members if regex.fullmatch(name))

    def read(self, name: str) -> bytes:
        """The bytes of one member; a member a damaged archive cannot give back is a DataError naming it."""
        member = self.members.get(name)
        if member is None:
            raise DataError(f"{name}: not in the sources ({', '.join(map(str, self.sources))})")
        try:
            if not member.in_zip:
                return member.path.read_bytes()
            handle = self._zips.get(member.path)
            if handle is None:  # one handle per process: workers open their own
                handle = self._zips[member.path] = zipfile.ZipFile(member.path)
            return handle.read(name)
        except (zipfile.BadZipFile, OSError, EOFError, zipfile.LargeZipFile, ValueError) as err:
            raise DataError(f"{member.path}: member {name} cannot be read ({err})") from None

    def __getstate__(self) -> dict[str, object]:  # open zip handles do not cross process boundaries
        return {**self.__dict__, "_zips": {}}


def describe_sources(sources: list[Path]) -> list[dict[str, object]]:
    """Name, size and (for files up to 256 MiB) sha256 of each source, for the manifest."""
    described = []
    for source in sources:
        entry: dict[str, object] = {"path": str(source)}
        if source.is_file():
            size = source.stat().st_size
            entry["bytes"] = size
            if size <= 256 * 2**20:
                entry["sha256"] = file_sha256(source)
        described.append(entry)
    return described


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _unpack_tar(archive: Path, staging: Path) -> Path:
    """Unpack a tar archive once under `staging`; an interrupted unpack starts over."""
    target = staging / re.sub(r"[^\w.-]", "_", archive.name)
    marker = target / UNPACKED
    if marker.is_file() and marker.read_text() == str(archive.stat().st_size):
        return target
    try:
        with tarfile.open(archive) as handle:
            handle.extractall(target, filter="data")  # no absolute paths, links out or devices
    except (tarfile.TarError, OSError, EOFError) as err:
        refusal = disk_refusal(target, err)  # a full disk is not a damaged archive
        if refusal is not None:
            raise refusal from None
        raise DataError(f"{archive}: damaged tar archive ({err})") from None
    marker.write_text(str(archive.stat().st_size))
    return target


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """`**/` = any folders (or none), `*` = any characters but `/`, `?` = one such character."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        char = pattern[i]
        out.append("[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char))
        i += 1
    return re.compile("".join(out))
