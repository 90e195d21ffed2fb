"""Where a registry lives: local disk or an object store, behind one set of storage primitives.

Every read and write goes through a `pyarrow.fs` filesystem, so one code path serves a local
folder, `file://`, `s3://`, `gs://` or any `pyarrow.fs.FileSystem` passed in. What differs is how
a change is made safe, and each kind of storage has its own class with the same methods:

* `LocalStore` (the local disk, directly or through a `SubTreeFileSystem`) uses what only the
  operating system offers: `os.mkdir` as a create-exclusive, `rename(2)`, `fcntl.flock`,
  `fsync`, `O_APPEND`.
* `ObjectStore` (S3, GCS, ...) has none of them through `pyarrow.fs`, but strong read-after-write
  and list-after-write consistency: claims that are listed back, writes read back, one object per
  log entry.

`open_store(root, filesystem)` picks the class; `Registry` calls the primitives without asking
which one it has. The guarantees of each protocol are in `ray_ml.registry._registry`'s docstring.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import posixpath
import random
import stat
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyarrow.fs as pafs

from ray_ml.errors import RegistryError

__all__ = ["REMOTE_ATTEMPTS", "Draft", "LocalStore", "ObjectStore", "Store", "open_store"]

#: Tries of an optimistic change on an object store (claiming a number, replacing a file).
REMOTE_ATTEMPTS = 50
_CHUNK = 1 << 20
_CLAIM_PREFIX = ".claim-"
_CLAIM_SPAN = 8  # numbers tried per listing of the published ones


class Draft(Protocol):
    """A new numbered folder (a registry version) for `Store.publish` to allocate and fill.

    Attributes:
        model: Whose folder it is, for messages.
        staging: A private folder for stores that fill a draft before claiming its number.
        files: Every file `fill` and `seal` write (removed again when publishing fails).
    """

    @property
    def model(self) -> str: ...

    @property
    def staging(self) -> str: ...

    @property
    def files(self) -> Sequence[str]: ...

    def folder(self, n: int) -> str:
        """The folder of number `n`."""
        ...

    def taken(self) -> list[int]:
        """Every number that has a folder, complete or not, ascending."""
        ...

    def published(self) -> list[int]:
        """The numbers of complete folders, ascending."""
        ...

    def fill(self, folder: str) -> None:
        """Write the content into `folder`, every file but the one `seal` writes."""
        ...

    def seal(self, folder: str, n: int) -> None:
        """Write the file that marks `folder` complete as number `n`; called last."""
        ...


@dataclass(frozen=True)
class Store(ABC):
    """A registry root on a pyarrow filesystem.

    Attributes:
        fs: The filesystem all I/O goes through.
        root: The root as a path on `fs` (no trailing slash).
    """

    fs: pafs.FileSystem
    root: str

    # -- paths ------------------------------------------------------------------------------------
    def join(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    @abstractmethod
    def display(self, path: str) -> str:
        """How a path is shown to users: an OS path, a URI, or the filesystem's own path."""

    # -- reads ------------------------------------------------------------------------------------
    def read_bytes(self, path: str) -> bytes | None:
        """The file's content, or None when it does not exist."""
        try:
            with self.fs.open_input_stream(path) as stream:
                return bytes(stream.read())
        except FileNotFoundError:
            return None

    def sha256(self, path: str) -> str:
        digest = hashlib.sha256()
        with self.fs.open_input_stream(path) as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def list_dir(self, path: str) -> list[pafs.FileInfo]:
        """Entries directly under `path` (empty when it does not exist)."""
        infos = self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        return sorted(infos, key=lambda info: info.base_name)

    def existing_files(self, paths: Iterable[str]) -> set[str]:
        paths = list(paths)
        if not paths:
            return set()
        return {i.path for i in self.fs.get_file_info(paths) if i.type == pafs.FileType.File}

    @abstractmethod
    def local_copy(self, folder: str, download: Callable[[], Path]) -> str:
        """An OS folder holding `folder`'s files: the folder itself, or what `download` made."""

    # -- writes -----------------------------------------------------------------------------------
    def write_bytes(self, path: str, data: bytes) -> None:
        self.fs.create_dir(posixpath.dirname(path), recursive=True)
        with self.fs.open_output_stream(path) as out:
            out.write(data)
        self.fsync(path)

    def replace_bytes(self, path: str, data: bytes) -> bool:
        """Write `path` so that a reader sees the old content or the new one, never a mix.

        The data goes to a unique sibling and is moved over `path`: a `rename(2)` on local disk
        (atomic on POSIX); a server-side copy on object stores, where replacing one object is
        atomic too.

        Returns:
            Whether `path` still holds `data`. Always on local disk, where the caller holds
            `locked`; an object store reads it back, as another writer may have replaced it in
            the meantime (then the caller redoes its change).
        """
        parent, name = posixpath.split(path)
        tmp = posixpath.join(parent, f".{name}.tmp-{uuid.uuid4().hex[:12]}")
        self.write_bytes(tmp, data)
        try:
            self.fs.move(tmp, path)
        except BaseException:
            self.delete_file(tmp)
            raise
        self.fsync(parent, directory=True)
        return True

    def delete_file(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(path)

    def delete_dir(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_dir(path)

    # -- what each kind of storage does its own way ---------------------------------------------
    @abstractmethod
    def fsync(self, path: str, *, directory: bool = False) -> None:
        """Make a written file (or a directory entry) durable before going on."""

    @abstractmethod
    def append_entry(self, log_file: str, log_dir: str, line: bytes) -> None:
        """Add one line to a log: appended to `log_file`, or one object of its own in `log_dir`.

        The caller holds `locked` on local disk. Readers read both places.
        """

    @abstractmethod
    def locked(self, lock_file: str) -> contextlib.AbstractContextManager[None]:
        """Exclusive across threads and processes where the storage can lock, else a no-op."""

    @abstractmethod
    def publish(self, draft: Draft) -> int:
        """Allocate the next number for `draft`, fill its folder and make it visible at once.

        Returns:
            The number: never one another writer got, never an existing folder overwritten.
        """


@dataclass(frozen=True)
class LocalStore(Store):
    """A registry on local disk: create-exclusive `mkdir`, `rename`, `flock`, `fsync`.

    Attributes:
        local_root: The root's OS path.
    """

    local_root: str

    def os_path(self, path: str) -> str:
        """The OS path of a path on `fs`."""
        rel = posixpath.relpath(path, self.root) if self.root else path
        return os.path.normpath(os.path.join(self.local_root, rel))

    def display(self, path: str) -> str:
        return self.os_path(path)

    def local_copy(self, folder: str, download: Callable[[], Path]) -> str:
        return self.os_path(folder)

    def fsync(self, path: str, *, directory: bool = False) -> None:
        """Flush a local file (or directory entry) to disk.

        pyarrow's streams do not fsync, and a registry must survive a power cut with either the
        old or the new state, never an empty file in place of aliases.json.
        """
        try:
            fd = os.open(self.os_path(path), os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass  # some filesystems refuse fsync on directories
        finally:
            os.close(fd)

    def append_entry(self, log_file: str, log_dir: str, line: bytes) -> None:
        """One O_APPEND write to `log_file` (the caller holds the lock)."""
        self.fs.create_dir(posixpath.dirname(log_file), recursive=True)
        with self.fs.open_append_stream(log_file) as out:
            out.write(line)
        self.fsync(log_file)

    @contextlib.contextmanager
    def locked(self, lock_file: str) -> Iterator[None]:
        """An exclusive `flock` on `lock_file`.

        Each call opens the lock file anew: flock(2) locks belong to the open file description,
        so two threads of one process exclude each other too.
        """
        local = self.os_path(lock_file)
        os.makedirs(os.path.dirname(local), exist_ok=True)
        fd = os.open(local, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def publish(self, draft: Draft) -> int:
        """Fill `draft.staging`, claim a number with `mkdir`, rename the staging folder over it."""
        staging = draft.staging
        try:
            draft.fill(staging)
            n = self._claim(draft)
            claimed = draft.folder(n)
            try:
                draft.seal(staging, n)
                # rename(2) of a folder over an empty one is atomic: the version appears whole.
                self.fs.move(staging, claimed)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.rmdir(self.os_path(claimed))  # give the number back
                raise
        except BaseException:
            with contextlib.suppress(OSError):
                self.fs.delete_dir(staging)
            raise
        self.fsync(posixpath.dirname(claimed), directory=True)
        # Read-only files make "versions are immutable" hold against careless hands too.
        for entry in os.scandir(self.os_path(claimed)):
            if entry.is_file():
                os.chmod(entry.path, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        return n

    def _claim(self, draft: Draft) -> int:
        """Allocate the next number with `os.mkdir`, the create-exclusive of POSIX."""
        n = max(draft.taken(), default=0) + 1
        os.makedirs(os.path.dirname(self.os_path(draft.folder(n))), exist_ok=True)
        while True:
            try:
                os.mkdir(self.os_path(draft.folder(n)))
                return n
            except FileExistsError:
                n += 1  # another registration took it between our listing and our mkdir


@dataclass(frozen=True)
class ObjectStore(Store):
    """A registry on an object store: listed-back claims, read-back writes, one object per entry.

    Attributes:
        scheme: `s3`, `gs`, ... when the root was given as a URI; it turns paths back into URIs
            for display.
    """

    scheme: str | None

    def display(self, path: str) -> str:
        return f"{self.scheme}://{path}" if self.scheme else path

    def local_copy(self, folder: str, download: Callable[[], Path]) -> str:
        return str(download())

    def fsync(self, path: str, *, directory: bool = False) -> None:
        return None  # no OS file behind an object: nothing to flush

    def replace_bytes(self, path: str, data: bytes) -> bool:
        super().replace_bytes(path, data)
        # Callers write a unique id into `data`, so equal bytes mean our write is the one there.
        return self.read_bytes(path) == data

    def append_entry(self, log_file: str, log_dir: str, line: bytes) -> None:
        """Object stores cannot append: one object per entry, named to sort by time."""
        key = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.json"
        self.write_bytes(posixpath.join(log_dir, key), line)

    @contextlib.contextmanager
    def locked(self, lock_file: str) -> Iterator[None]:
        yield  # nothing to lock with: changes are optimistic (see `replace_bytes`)

    def publish(self, draft: Draft) -> int:
        """Claim a number, upload into its folder, write the marker last, drop the claim."""
        n, claim = self._claim(draft)
        folder = draft.folder(n)
        try:
            draft.fill(folder)
            # Written last: its presence is what makes the version visible to readers.
            draft.seal(folder, n)
        except BaseException:
            for file in draft.files:
                with contextlib.suppress(OSError):
                    self.delete_file(posixpath.join(folder, file))
            self.delete_file(claim)
            raise
        self.delete_file(claim)
        return n

    def _claim(self, draft: Draft) -> tuple[int, str]:
        """Claim a number without locks or conditional writes (see the registry's docstring)."""
        for attempt in range(REMOTE_ATTEMPTS):
            start = max(draft.published(), default=0) + 1
            for n in range(start, start + _CLAIM_SPAN):
                folder = draft.folder(n)
                claim = posixpath.join(folder, f"{_CLAIM_PREFIX}{uuid.uuid4().hex}")
                self.write_bytes(claim, b"")
                if [info.path for info in self.list_dir(folder)] == [claim]:
                    return n, claim
                self.delete_file(claim)  # someone else holds or races for n
            time.sleep(random.uniform(0.0, 0.01 * 2 ** min(attempt, 6)))
        raise RegistryError(
            f"could not allocate a version of model {draft.model!r} in "
            f"{self.display(self.root)} after {REMOTE_ATTEMPTS} attempts: too many "
            "registrations are racing on an object store. Register versions of one model from "
            "one process at a time."
        )


def open_store(root: str | os.PathLike[str], filesystem: pafs.FileSystem | None) -> Store:
    """The store of a registry root: a path, a URI, or a path on `filesystem`.

    Local disk, directly or through a `SubTreeFileSystem`, gets a `LocalStore`; any other
    filesystem an `ObjectStore`.
    """
    text = os.fspath(root)
    scheme = None
    if filesystem is not None:
        fs, path = filesystem, text
    elif "://" in text:
        fs, path = pafs.FileSystem.from_uri(text)
        scheme = text.split("://", 1)[0]
    else:
        fs, path = pafs.LocalFileSystem(), os.path.expanduser(text)
    if isinstance(fs, pafs.LocalFileSystem):
        path = os.path.abspath(path)
    stripped = path.rstrip("/")
    path = stripped if stripped or not path.startswith("/") else "/"
    base = _local_base(fs)
    if base is not None:
        return LocalStore(fs, path, _local_join(base, path))
    return ObjectStore(fs, path, scheme)


def _local_base(fs: pafs.FileSystem) -> str | None:
    """The OS path `fs` paths are relative to ('' for the local disk itself), or None."""
    if isinstance(fs, pafs.LocalFileSystem):
        return ""
    if isinstance(fs, pafs.SubTreeFileSystem):
        inner = _local_base(fs.base_fs)
        return None if inner is None else _local_join(inner, fs.base_path)
    return None


def _local_join(base: str, path: str) -> str:
    if not base:
        return os.path.abspath(path)
    return os.path.normpath(os.path.join(base, path.lstrip("/")))
