"""Reading a chute dataset: a Source over memory-mapped shards, opened lazily."""

from __future__ import annotations

import itertools
import mimetypes
import os
import weakref
from stat import S_ISLNK, S_ISREG
from typing import Any, Optional

import numpy as np

from chute.errors import FormatError, explain
from chute.format.manifest import MANIFEST, Manifest, ShardInfo
from chute.format.shard import ShardView, sha256_file
from chute.sources.base import Rows, row_indices
from chute.spec import Spec
from chute.telemetry.progress import Progress

__all__ = ["MANIFEST_LIMIT", "ChuteSource", "open_source", "parse_manifest", "verify_local"]

MANIFEST_LIMIT = 64 << 20  # a manifest (or journal) bigger than this is not chute's


class ChuteSource:
    """Samples stored in a chute dataset directory.

    A batch is one vectorised gather per field and per shard it touches (never ``Table.take``):
    indices are grouped by shard and each group is a fancy index into that shard's numpy view.
    """

    vectorised = True  # read_rows is one gather per field, so conversion reads whole blocks

    def __init__(self, root: str, manifest: Manifest, directory: Optional[int] = None) -> None:
        self.root = root
        self.manifest = manifest
        self._starts = np.cumsum([0] + [s.rows for s in manifest.shards], dtype=np.int64)
        self._views: list[Optional[ShardView]] = [None] * len(manifest.shards)
        self._directory = directory  # the directory as opened: shards are opened through it
        if directory is not None:
            weakref.finalize(self, os.close, directory)

    @property
    def spec(self) -> Spec:
        return self.manifest.spec

    @property
    def image_fields(self) -> tuple[str, ...]:
        """Bytes fields the manifest marks as encoded images."""
        return self.manifest.images

    @property
    def class_names(self) -> Optional[list[str]]:
        names = self.manifest.class_names
        return None if names is None else list(names)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def fingerprint(self) -> str:
        """The shards' checksums, from the manifest."""
        return ",".join(shard.sha256 for shard in self.manifest.shards)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled for worker processes started with spawn: the directory and manifest travel; the
        # worker opens the directory again, refusing it if it holds another dataset by then.
        return (_reopen, (self.root, self.manifest))

    def _shard(self, number: int) -> ShardView:
        view = self._views[number]
        if view is None:  # (no lock: one held by another thread at a fork would stay held in the child)
            info = self.manifest.shards[number]
            view = ShardView(self._shard_path(number), self.spec.fields, info, directory=self._directory)
            self._views[number] = view  # maps are made on first use, per access pattern
        return view

    def _shard_path(self, number: int) -> str:
        return os.path.join(self.root, self.manifest.shards[number].file)

    def read_sample(self, index: int) -> list[Any]:
        return [column[0] for column in self.read_rows(np.array([index], dtype=np.int64))]

    def read_rows(self, rows: Rows) -> list[Any]:
        if isinstance(rows, slice):
            first = int(np.searchsorted(self._starts, rows.start, side="right")) - 1
            if rows.start < rows.stop <= self._starts[first + 1] and self._all_fixed():
                local = slice(rows.start - int(self._starts[first]), rows.stop - int(self._starts[first]))
                return self._shard(first).scan(local.start, local.stop)
        rows = row_indices(rows)
        if len(rows) > 1 and not bool(np.all(rows[1:] >= rows[:-1])):
            order = np.argsort(rows, kind="stable")
            inverse = np.empty_like(order)
            inverse[order] = np.arange(len(order))
            return [column[inverse] for column in self._read_sorted(rows[order])]
        return self._read_sorted(rows)

    def _read_sorted(self, rows: np.ndarray) -> list[Any]:
        """Rows in ascending order: each shard's run is gathered straight into the output."""
        if not len(rows):
            return [f.empty(0) for f in self.spec.fields]
        first = int(np.searchsorted(self._starts, rows[0], side="right")) - 1
        last = int(np.searchsorted(self._starts, rows[-1], side="right")) - 1
        if first == last:
            return [_take(c, rows - self._starts[first]) for c in self._shard(first).columns]
        cuts = [0, *np.searchsorted(rows, self._starts[first + 1 : last + 1]).tolist(), len(rows)]
        out = [f.empty(len(rows)) for f in self.spec.fields]
        for number, a, b in zip(range(first, last + 1), cuts[:-1], cuts[1:], strict=True):
            if a == b:
                continue
            local = rows[a:b] - self._starts[number]
            for target, column in zip(out, self._shard(number).columns, strict=True):
                if isinstance(column, np.ndarray):
                    np.take(column, local, axis=0, out=target[a:b], mode="clip")  # indices already checked
                else:
                    target[a:b] = column.take(local)
        return out

    def lengths(self, name: str) -> np.ndarray:
        """Field ``name``'s length in every sample, from the shards' offsets (no values are read)."""
        index = self.spec.names.index(name)
        field = self.spec.fields[index]
        parts = [np.diff(self._shard(i).columns[index].offsets) for i in range(len(self._views))]
        lengths = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        return lengths // max(1, field.items) if field.kind == "ragged" else lengths

    def _all_fixed(self) -> bool:
        return all(f.kind == "array" for f in self.spec.fields)


def _take(column: Any, rows: np.ndarray) -> np.ndarray:
    return column.take(rows, axis=0) if isinstance(column, np.ndarray) else column.take(rows)


def open_directory(root: str) -> int:
    """A descriptor of the dataset directory ``root`` (FormatError if there is none)."""
    try:
        return os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        raise _not_a_dataset(root) from None


def _not_a_dataset(root: str) -> FormatError:
    """What ``root`` is instead of a chute dataset, and how to make one of it."""
    convert = f"chute convert {root} {root.rstrip(os.sep)}.chute"
    head, tail = os.path.split(os.path.abspath(root))
    if os.path.isdir(os.path.join(head, f".{tail}.partial")):
        return FormatError(
            explain(
                f"{MANIFEST} in {root}",
                "a conversion that did not finish: the dataset is incomplete (its shards are kept aside)",
                "Run the conversion again with resume=True (--resume) to finish it.",
            )
        )
    if not os.path.exists(root):
        return FormatError(explain("a chute dataset directory", f"no such path: {root!r}", "Check the path."))
    if not os.path.isdir(root):
        suffix = os.path.splitext(root)[1].lower()
        kind = {".parquet": "a Parquet file", ".csv": "a CSV file", ".npy": "a .npy array"}.get(
            suffix, "a file"
        )
        return FormatError(
            explain(
                "a chute dataset directory",
                f"{kind}, {root}",
                f"Not a chute dataset: convert it ({convert}).",
            )
        )
    with os.scandir(root) as listing:
        entries = list(listing)
    images = any(_holds_images(e.path) for e in [e for e in entries if e.is_dir()][:8])
    if images:
        return FormatError(
            explain(
                f"a chute dataset directory (with {MANIFEST})",
                f"an image folder (class sub-folders of images) at {root}: not a chute dataset",
                f"Read it with chute.image_folder({root!r}), or convert it ({convert}).",
            )
        )
    return FormatError(
        explain(
            f"a chute dataset directory (with {MANIFEST})",
            f"a directory of {len(entries)} entries and no {MANIFEST} at {root}: not a chute dataset",
            "Check the path, or convert the data first (chute convert).",
        )
    )


def _holds_images(folder: str) -> bool:
    with os.scandir(folder) as listing:
        return any(
            (mimetypes.guess_type(e.name)[0] or "").startswith("image/")
            for e in itertools.islice(listing, 16)
        )


def read_manifest(root: str, directory: Optional[int] = None) -> Manifest:
    """The manifest of the dataset at ``root`` (read through ``directory``, its descriptor, if given)."""
    owned = directory is None
    fd = open_directory(root) if directory is None else directory
    path = os.path.join(root, MANIFEST)
    try:
        try:
            if S_ISLNK(os.stat(MANIFEST, dir_fd=fd, follow_symlinks=False).st_mode):
                _check_inside(root, path, MANIFEST)  # (as shard links are)
            manifest = os.open(MANIFEST, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0), dir_fd=fd)  # (a FIFO)
        except FileNotFoundError:
            raise _not_a_dataset(root) from None
        except OSError as error:  # (a symlink loop, a permission...)
            raise _unreadable(path, error) from None
        try:
            if not S_ISREG(os.fstat(manifest).st_mode):
                raise FormatError(
                    explain(f"{path} a regular file", "another kind (a directory?)", "It is not chute's.")
                )
            with open(manifest, "rb", closefd=False) as f:
                data = f.read(MANIFEST_LIMIT + 1)
        except OSError as error:
            raise _unreadable(path, error) from None
        finally:
            os.close(manifest)
    finally:
        if owned:
            os.close(fd)
    if len(data) > MANIFEST_LIMIT:
        raise FormatError(
            explain(f"a manifest under 64 MiB in {root}", "a bigger file", "It is not chute's.")
        )
    return parse_manifest(data, os.path.join(root, MANIFEST))


def parse_manifest(data: bytes, where: str) -> Manifest:
    """The manifest in ``data`` (UTF-8 JSON), read from ``where``."""
    try:
        text = data.decode("utf-8", errors="strict")
    except UnicodeDecodeError as error:
        raise FormatError(explain(f"UTF-8 JSON in {where}", error, "The manifest is damaged.")) from None
    return Manifest.from_json(text, where)


def _unreadable(path: str, error: OSError) -> FormatError:
    return FormatError(
        explain(
            f"a readable file at {path}",
            f"{type(error).__name__}: {error.strerror or error}",
            "The dataset is damaged: convert it again.",
        )
    )


def _check_files(root: str, manifest: Manifest, directory: Optional[int] = None) -> None:
    """Every shard is a regular file of the size the manifest says, inside the dataset directory."""
    for info in manifest.shards:
        path = os.path.join(root, info.file)
        name = info.file if directory is not None else path
        try:
            stat = os.stat(name, dir_fd=directory, follow_symlinks=False)
            if S_ISLNK(stat.st_mode):
                _check_inside(root, path)
                stat = os.stat(name, dir_fd=directory)
        except FileNotFoundError:
            stat = None
        except OSError as error:  # (a symlink loop...)
            raise _unreadable(path, error) from None
        if stat is None or not S_ISREG(stat.st_mode):
            raise FormatError(
                explain(
                    f"shard {info.file} in {root} (a regular file)",
                    "no such file",
                    "The dataset is incomplete: convert it again.",
                )
            )
        if stat.st_size != info.bytes:
            raise FormatError(
                explain(
                    f"{info.bytes} bytes in shard {path}, as the manifest says",
                    f"{stat.st_size} bytes",
                    "The shard is truncated or was replaced: convert the dataset again.",
                )
            )


def _check_inside(root: str, path: str, what: str = "") -> None:
    """A link in the dataset must lead to a file inside it."""
    inside, target = os.path.realpath(root), os.path.realpath(path)
    if os.path.commonpath([inside, target]) != inside:
        raise FormatError(
            explain(
                f"{what or 'shard ' + os.path.basename(path)} inside the dataset directory {root}",
                f"a link to {target}",
                "Refusing a file outside the dataset: copy it into the directory.",
            )
        )


def verify_local(root: str | os.PathLike[str], progress: Optional[bool] = None) -> Manifest:
    """Check every shard against the manifest (presence, size, sha256, readability).

    ``progress`` shows a bar of megabytes checked (default: when stderr is a terminal).
    """
    root = os.fspath(root)
    directory = open_directory(root)
    try:
        manifest = read_manifest(root, directory)
        _check_files(root, manifest, directory)
        _verify_shards(root, manifest, directory, progress)
    finally:
        os.close(directory)
    return manifest


def _verify_shards(root: str, manifest: Manifest, directory: int, progress: Optional[bool]) -> None:
    with Progress("verifying", manifest.bytes, unit="bytes", enabled=progress) as bar:
        for info in manifest.shards:
            _verify_shard(root, manifest, info, directory)
            bar.update(info.bytes)


def _verify_shard(root: str, manifest: Manifest, info: ShardInfo, directory: int) -> None:
    path = os.path.join(root, info.file)
    view = ShardView(path, manifest.spec.fields, info, directory=directory)
    fd = view._open()
    try:
        digest = sha256_file(fd)
    finally:
        os.close(fd)
    if digest != info.sha256:
        raise FormatError(
            explain(
                f"sha256 {info.sha256[:16]}... for shard {path}",
                "a different checksum",
                "The shard is corrupted: convert the dataset again.",
            )
        )
    if not view.columns:  # readable, with the right rows
        raise FormatError(explain(f"fields in shard {path}", "none", "The dataset is damaged."))


def open_source(path: str | os.PathLike[str], verify: bool = False) -> ChuteSource:
    """The source over a converted dataset directory: the manifest read, every shard checked to be
    present with the right size (milliseconds); shards are memory-mapped when first read.
    ``verify=True`` also recomputes every checksum first."""
    root = os.fspath(path)
    for attempt in range(_ATTEMPTS):
        directory = open_directory(root)
        try:
            manifest = read_manifest(root, directory)
            _check_files(root, manifest, directory)
            if verify:  # the very dataset that is returned, read once
                _verify_shards(root, manifest, directory, None)
        except FormatError:
            replaced = _replaced(root, directory)
            os.close(directory)
            if replaced and attempt + 1 < _ATTEMPTS:
                continue  # a conversion published another dataset there meanwhile: open that one
            raise
        except BaseException:
            os.close(directory)
            raise
        return ChuteSource(root, manifest, directory)
    raise AssertionError("unreachable")


_ATTEMPTS = 5


def _replaced(root: str, directory: int) -> bool:
    """Whether ``root`` now names another directory than ``directory`` (or none)."""
    try:
        return os.stat(root).st_ino != os.fstat(directory).st_ino
    except FileNotFoundError:
        return True


def _reopen(root: str, manifest: Manifest) -> ChuteSource:
    """The dataset at ``root`` opened again in another process: the one ``manifest`` describes."""
    source = open_source(root)
    if source.manifest.shards != manifest.shards:
        raise FormatError(
            explain(
                f"the dataset that was opened at {root}",
                "another dataset there now",
                "It was replaced while in use (a conversion with overwrite=True?): open it again.",
            )
        )
    return source
