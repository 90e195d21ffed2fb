"""Where a registry lives: a `pyarrow.fs` filesystem, a root on it and, on local disk, its OS path.

Every read and write goes through the pyarrow filesystem, so one code path serves a local folder,
`file://`, `s3://`, `gs://` or any `pyarrow.fs.FileSystem` passed in. The only things that need the
operating system are the primitives object stores lack (`os.mkdir` as a create-exclusive,
`fcntl.flock`, `fsync`); `local()` says whether a path has an OS path those can use.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow.fs as pafs

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Store:
    """A registry root on a pyarrow filesystem.

    Attributes:
        fs: The filesystem all I/O goes through.
        root: The root as a path on `fs` (no trailing slash).
        local_root: The root's OS path when `fs` is the local disk (directly or through a
            `SubTreeFileSystem`), else None: then the object-store protocols are used.
        scheme: `s3`, `gs`, ... when the root was given as a URI of a remote filesystem; it
            turns paths back into URIs for display.
    """

    fs: pafs.FileSystem
    root: str
    local_root: str | None
    scheme: str | None

    @classmethod
    def open(cls, root: str | os.PathLike[str], filesystem: pafs.FileSystem | None) -> Store:
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
        local_root = None if base is None else _local_join(base, path)
        return cls(fs, path, local_root, None if local_root is not None else scheme)

    @property
    def is_local(self) -> bool:
        return self.local_root is not None

    # -- paths ------------------------------------------------------------------------------------
    def join(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def local(self, path: str) -> str | None:
        """The OS path of a path on `fs`, or None on a remote filesystem."""
        if self.local_root is None:
            return None
        rel = posixpath.relpath(path, self.root) if self.root else path
        return os.path.normpath(os.path.join(self.local_root, rel))

    def display(self, path: str) -> str:
        """How a path is shown to users: an OS path, a URI, or the filesystem's own path."""
        local = self.local(path)
        if local is not None:
            return local
        return f"{self.scheme}://{path}" if self.scheme else path

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

    # -- writes -----------------------------------------------------------------------------------
    def write_bytes(self, path: str, data: bytes) -> None:
        self.fs.create_dir(posixpath.dirname(path), recursive=True)
        with self.fs.open_output_stream(path) as out:
            out.write(data)
        self.fsync(path)

    def replace_bytes(self, path: str, data: bytes) -> None:
        """Write `path` so that a reader sees the old content or the new one, never a mix.

        The data goes to a unique sibling and is moved over `path`: a `rename(2)` on local disk
        (atomic on POSIX); a server-side copy on object stores, where replacing one object is
        atomic too.
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

    def append_line(self, path: str, line: bytes) -> None:
        """Append one line with a single O_APPEND write (local disk; the caller holds the lock)."""
        self.fs.create_dir(posixpath.dirname(path), recursive=True)
        with self.fs.open_append_stream(path) as out:
            out.write(line)
        self.fsync(path)

    def delete_file(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(path)

    def delete_dir(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_dir(path)

    def fsync(self, path: str, *, directory: bool = False) -> None:
        """Flush a local file (or directory entry) to disk; a no-op on remote filesystems.

        pyarrow's streams do not fsync, and a registry must survive a power cut with either the
        old or the new state, never an empty file in place of aliases.json.
        """
        local = self.local(path)
        if local is None:
            return
        try:
            fd = os.open(local, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass  # some filesystems refuse fsync on directories
        finally:
            os.close(fd)


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
