"""The artifact store on the model volume (runtime, file system): where an artifact goes, reuse, atomic commit.

Layout under the output root:

    <base-slug>--<base id[:16]>/<recipe label>--<recipe id[:16]>/   a finished artifact (marker inside)
    <base-slug>--<base id[:16]>/.partial-<label>--<id>-<pid>/       work in progress, removed if abandoned
    <base-slug>--<base id[:16]>/.lock-<label>--<id>                 flock held while one job works on it

The folder is keyed on the base model only (its folder name, for people, and its content identity, see
`identity.py`) and the recipe: never on who asked, so every DialogueModel on the same base and recipe gets the
same artifact. A finished artifact of the same content and recipe in a folder of another name (a copy of the
base under another folder name, or the layout before this one, which used the DialogueModel's name) is reused
too (`reusable`). Each requester gets its own stable path (`--link PATH`): a relative symlink at PATH pointing
at the artifact, the path the serving Deployment and the evaluation Job use (`/models/compressed/<model>-<variant>`).

An artifact is committed by writing its marker last and then renaming the partial folder into place, so a
folder without a marker is never served and a crashed job leaves only a partial folder the next job removes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from dialogue_runtime.compress.errors import StorageError

MARKER_NAME = ".dialogue-artifact.json"
_ID_CHARS = 16


def slug(name: str) -> str:
    cleaned = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return cleaned[:48] or "model"


@dataclass(frozen=True)
class ArtifactPaths:
    """Every path one (base model, recipe) pair uses."""

    model_dir: Path
    final_dir: Path
    lock_file: Path
    partial_prefix: str

    @property
    def marker(self) -> Path:
        return self.final_dir / MARKER_NAME

    def partial_dir(self, pid: int) -> Path:
        return self.model_dir / f"{self.partial_prefix}{pid}"


def base_folder_name(base: Path) -> str:
    """The name of the base model's folder (`/models/smollm2/` and `smollm2/.` both give `smollm2`)."""
    return Path(os.path.abspath(base)).name


def artifact_paths(output_root: Path, base_name: str, base_id: str, label: str, recipe_hash: str) -> ArtifactPaths:
    """Deterministic paths: the same base model (folder name and content) and recipe always map to one folder."""
    model_dir = output_root / f"{slug(base_name)}--{base_id[:_ID_CHARS]}"
    return _paths_in(model_dir, f"{label}--{recipe_hash[:_ID_CHARS]}")


def _paths_in(model_dir: Path, leaf: str) -> ArtifactPaths:
    return ArtifactPaths(
        model_dir=model_dir,
        final_dir=model_dir / leaf,
        lock_file=model_dir / f".lock-{leaf}",
        partial_prefix=f".partial-{leaf}-",
    )


def reusable(paths: ArtifactPaths) -> ArtifactPaths:
    """`paths`, or those of a finished artifact of the same base content and recipe in another folder.

    Another folder means the same base id under another name: a copy of the base under another folder name, or
    an artifact of the earlier layout (named after the DialogueModel). `paths` wins when it holds one; otherwise
    the first such folder in name order. Two jobs that start at once for differently named copies of the same
    base both compress (each holds only its own folder's lock); jobs for the same base folder never do.
    """
    if read_marker(paths.final_dir) is not None:
        return paths
    base_key = paths.model_dir.name.rpartition("--")[2]
    for final_dir in sorted(paths.model_dir.parent.glob(f"*--{base_key}/{paths.final_dir.name}")):
        if final_dir.parent != paths.model_dir and read_marker(final_dir) is not None:
            return _paths_in(final_dir.parent, final_dir.name)
    return paths


def read_marker(final_dir: Path) -> dict[str, Any] | None:
    """The marker of a finished artifact, or None when the folder is not a finished artifact."""
    try:
        data = json.loads((final_dir / MARKER_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def storage_error(exc: OSError, where: Path) -> StorageError | None:
    """A StorageError for a full or read-only volume (quoting the OS error), None for other errors."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageError(f"no space left on the output volume at {where}: {exc}")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StorageError(f"output volume not writable at {where}: {exc}", reason="StorageNotWritable")
    return None


def _raise_storage(exc: OSError, where: Path) -> NoReturn:
    error = storage_error(exc, where)
    if error is not None:
        raise error from exc
    raise exc


@contextlib.contextmanager
def locked(paths: ArtifactPaths, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Holds an exclusive lock on this artifact: a second job for the same input waits, then reuses.

    `on_wait` is called once when another job holds the lock, before waiting for it.
    """
    try:
        paths.model_dir.mkdir(parents=True, exist_ok=True)
        fh = paths.lock_file.open("a")
    except OSError as exc:
        _raise_storage(exc, paths.model_dir)
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def remove_partials(paths: ArtifactPaths) -> list[Path]:
    """Removes half-written outputs of this artifact left by crashed jobs (call with the lock held)."""
    removed = []
    for entry in sorted(paths.model_dir.glob(f"{paths.partial_prefix}*")):
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    if paths.final_dir.exists() and read_marker(paths.final_dir) is None:  # e.g. copied by hand, incomplete
        shutil.rmtree(paths.final_dir, ignore_errors=True)
        removed.append(paths.final_dir)
    return removed


def commit(partial: Path, paths: ArtifactPaths, marker: dict[str, Any]) -> None:
    """Writes the marker last, then renames the partial folder into place (atomic on one file system)."""
    try:
        tmp = partial / f"{MARKER_NAME}.tmp"
        tmp.write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
        tmp.replace(partial / MARKER_NAME)
        partial.replace(paths.final_dir)
    except OSError as exc:
        _raise_storage(exc, partial)


def link_variant(link: Path, final_dir: Path) -> Path:
    """Points `link` at the artifact with a relative symlink, replaced atomically (a stable serving path)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.exists() and not link.is_symlink():
        raise StorageError(
            f"cannot link {link} to the artifact: a file or folder is already there", reason="LinkBlocked"
        )
    tmp = link.parent / f".{link.name}.tmp-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(os.path.relpath(final_dir, link.parent))
    tmp.replace(link)
    return link


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
