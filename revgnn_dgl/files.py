"""The one home of the package's file plumbing (importable without torch or DGL).

* :func:`whole_file` / :func:`write_whole`: a file is written whole or not at all (a temporary
  name in the same folder, fsync of the file, rename over the target, fsync of the folder); a
  symbolic link at the target is refused, never written through, and a temporary file never
  outlives the write (also on Ctrl-C).
* :func:`refuse_link` and :func:`open_nofollow`: the link rule, for the files appended to or locked.
* :func:`file_lock`: an advisory ``flock`` that the kernel releases when the process ends.
* :func:`to_json`, :func:`write_json`, :func:`write_yaml`: strict JSON (no ``NaN`` token) and YAML,
  written whole.

Every writer of the package goes through here; ``tests/test_one_home.py`` fails on an
``os.replace``, ``os.rename`` or ``fcntl.flock`` anywhere else.
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterator, Mapping, Optional, Type, Union

from .errors import ConfigError, RevGNNError

PathLike = Union[str, "os.PathLike[str]"]


def refuse_link(path: PathLike, error: Type[RevGNNError] = ConfigError, advice: str = "remove it") -> None:
    """One line, as ``error``, when ``path`` is a symbolic link: the package never writes through one."""
    path = Path(path)
    if path.is_symlink():
        raise error(f"{path} is a symbolic link (to {os.readlink(path)}): revgnn-dgl never writes through a link; "
                    f"{advice}.")  # fmt: skip


def open_nofollow(path: PathLike, flags: int, error: Type[RevGNNError] = ConfigError) -> int:
    """``os.open`` (mode 0644 when it creates) that refuses a symbolic link at ``path`` with one line."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise error(f"{path} is a symbolic link: revgnn-dgl never writes through a link; remove it.") from None
        raise


def fsync_dir(folder: PathLike) -> None:
    """Make a rename in ``folder`` durable; best effort (not every platform can open a directory)."""
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


@contextmanager
def whole_file(
    path: PathLike,
    mode: str = "wb",
    *,
    error: Type[RevGNNError] = ConfigError,
    before_rename: Optional[Callable[[], None]] = None,
    suffix: str = "",
) -> Iterator[IO[Any]]:
    """Write ``path`` whole or not at all: yields a file object on a temporary file in the same
    folder; when the block ends without an error the file is fsynced and renamed over ``path``.

    ``mode`` is ``'wb'`` or ``'w'`` (UTF-8). ``before_rename`` runs between the fsync and the
    rename (a crash test's hook). An ``OSError`` (no space, read-only) names ``path``, not the
    temporary file. The folder is created when missing.
    """
    path = Path(path)
    refuse_link(path, error)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp", suffix=suffix)
    try:
        text: Dict[str, Any] = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
        with os.fdopen(fd, mode, **text) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes the file private; these are ordinary files
        if before_rename is not None:
            before_rename()
        os.replace(tmp_name, path)
    except OSError as err:  # name the file the user knows
        if err.errno is not None and err.filename in (None, tmp_name):
            err.filename = str(path)
        raise
    finally:  # also on KeyboardInterrupt: never leave the temporary file behind
        Path(tmp_name).unlink(missing_ok=True)
    fsync_dir(path.parent)


def write_whole(path: PathLike, data: Union[str, bytes], *, error: Type[RevGNNError] = ConfigError,
                before_rename: Optional[Callable[[], None]] = None) -> None:  # fmt: skip
    """Write ``data`` (text or bytes) to ``path`` whole or not at all (:func:`whole_file`)."""
    with whole_file(path, "wb" if isinstance(data, bytes) else "w", error=error, before_rename=before_rename) as fh:
        fh.write(data)


def _first_non_finite(data: Any, where: str = "") -> str:
    if isinstance(data, float) and not math.isfinite(data):
        return f"{where or 'value'} = {data}"
    items = data.items() if isinstance(data, Mapping) else enumerate(data) if isinstance(data, (list, tuple)) else ()
    for key, value in items:
        found = _first_non_finite(value, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return ""


def to_json(data: Any, **kwargs: Any) -> str:
    """Strict JSON: a non-finite number is an error here, never a ``NaN`` token in a file."""
    try:
        return json.dumps(data, allow_nan=False, **kwargs)
    except ValueError:
        raise ValueError(f"refusing to write non-finite numbers as JSON: {_first_non_finite(data)}") from None


#: Nesting beyond this in a file read with :func:`strict_json` is refused (a crafted file's stack bomb).
MAX_JSON_DEPTH = 32


def strict_json(text: str) -> Any:
    """``json.loads`` refusing NaN/Infinity (``ValueError``) and nesting deeper than :data:`MAX_JSON_DEPTH`."""

    def refuse(token: str) -> None:
        raise ValueError(f"non-standard JSON token {token}")

    value = json.loads(text, parse_constant=refuse)
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValueError("nested too deeply")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return value


def write_json(path: PathLike, data: Any, *, error: Type[RevGNNError] = ConfigError, **kwargs: Any) -> None:
    """Strict JSON (:func:`to_json`, indented), written whole."""
    write_whole(path, to_json(data, **{"indent": 2, **kwargs}) + "\n", error=error)


def write_yaml(path: PathLike, data: Mapping[str, Any]) -> None:
    import yaml

    write_whole(path, yaml.safe_dump(dict(data), sort_keys=False))


@contextmanager
def file_lock(fd: int, *, blocking: bool = True) -> Iterator[None]:
    """Hold an exclusive advisory lock on the open file (or folder) ``fd`` for the block.

    The kernel releases it when the process ends, however it ends, so a killed process never
    leaves a stale lock. Non-blocking: raises ``BlockingIOError`` when another process holds it.
    """
    acquire_lock(fd, blocking=blocking)
    try:
        yield
    finally:
        release_lock(fd)


def acquire_lock(fd: int, *, blocking: bool = True) -> None:
    """Take the exclusive advisory lock on ``fd`` (held until :func:`release_lock` or the fd closes).
    Non-blocking: ``BlockingIOError`` when another process holds it."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError as err:
        if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise BlockingIOError(err.errno, "held by another process") from None
        raise


def release_lock(fd: int) -> None:
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)
