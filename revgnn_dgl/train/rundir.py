"""The run directory: its files' names, the lock that gives one process a run, what a fresh start
may replace and how a failed one is undone.

The trainer enters it once, after the data and the model are known to be good: links refused,
the lock taken, a run there refused (or ``--overwrite`` removing it), ``config.yaml`` written.
Files are written whole by :mod:`revgnn_dgl.files`; ``metrics.jsonl`` is
:mod:`revgnn_dgl.train.metrics_log`'s. Nothing is written through a symbolic link: a link where the project writes (a planted
``.lock``, ``metrics.jsonl``, a checkpoint, a ``run-K`` folder...) is refused with one line
before anything is written, and the files it appends to or locks are opened with
``O_NOFOLLOW``, so a file outside the run directory is never opened for writing.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any, List, Optional, Union

from ..files import acquire_lock, open_nofollow
from ..log import get_logger
from .config import ConfigError, TrainConfig
from .metrics_log import METRICS_FILE, read_metrics

CONFIG_FILE = "config.yaml"
BEST_FILE = "best.safetensors"
LAST_FILE = "last.safetensors"
STATE_FILE = "state.safetensors"
SUMMARY_FILE = "summary.json"
LOCK_FILE = ".lock"
#: Every name the trainer writes in a run directory (and may therefore never be a link).
RUN_FILES = (LOCK_FILE, CONFIG_FILE, METRICS_FILE, BEST_FILE, LAST_FILE, STATE_FILE, SUMMARY_FILE,
             "metrics.csv", "tensorboard")  # fmt: skip

PathLike = Union[str, Path]

log = get_logger(__name__)


def out_dir(config: TrainConfig) -> Path:
    """The run's output directory, ``config.out``, which a training needs."""
    if not config.out:
        raise ConfigError("no output directory: set out (--out DIR).")
    return Path(config.out)


def run_dirs(config: TrainConfig) -> List[Path]:
    """The run directories of a config: ``out`` itself for one run, ``out/run-I`` for several."""
    out = out_dir(config)
    return [out] if config.runs == 1 else [out / f"run-{i}" for i in range(config.runs)]


def run_configs(config: TrainConfig) -> List[TrainConfig]:
    """Each run's own config: seed ``seed + i``, one run, its own directory (:func:`run_dirs`)."""
    return [
        dataclasses.replace(config, seed=config.seed + i, runs=1, out=str(run_dir))
        for i, run_dir in enumerate(run_dirs(config))
    ]


def refuse_links(config: TrainConfig) -> None:
    """Refuse a run directory where the trainer would write through a symbolic link.

    Checked before anything is written: ``out``'s own files and, for several runs, each
    ``run-K`` folder and its files.

    Raises
    ------
    ConfigError
        Naming the first link and where it points.
    """
    out = out_dir(config)
    folders = [out] + ([p for p in run_dirs(config)] if config.runs > 1 else [])
    for folder in folders:
        candidates = [folder] if folder != out else []
        candidates += [folder / name for name in RUN_FILES]
        for path in candidates:
            if path.is_symlink():
                raise ConfigError(
                    f"{path} is a symbolic link (to {os.readlink(path)}): revgnn-dgl never writes through a link; "
                    "remove it, or choose another --out."
                )


# ------------------------------------------------------------------ the lock
class RunLock:
    """An exclusive lock on a run directory, held for a whole ``train`` or ``--resume``.

    An advisory ``flock`` on ``DIR/.lock``: the kernel releases it when the process ends, however
    it ends, so a killed run never leaves a stale lock. The holder's pid is written into the file
    so that a refused process can name it.

    Raises
    ------
    ConfigError
        When another process holds the lock.
    """

    def __init__(self, folder: PathLike, sign: bool = True) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._fd: Optional[int] = None
        self._sign = sign  # False: the caller signs once its checks passed (a refused command writes nothing)

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.created = not os.path.lexists(self.path)
        fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT)
        try:
            acquire_lock(fd, blocking=False)
        except BlockingIOError:
            holder = (os.pread(fd, 32, 0).decode(errors="replace").split() or ["unknown"])[0]
            os.close(fd)
            raise ConfigError(
                f"{self.path.parent} is in use by another revgnn-dgl process (pid {holder}); "
                "wait for it to finish or choose another --out."
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        if self._sign:
            self.sign()
        return self

    def sign(self) -> None:
        """Write this process's pid into the lock, for a refused process to name; called once the
        command is known to go ahead, so that a refused command leaves the directory as it was."""
        assert self._fd is not None
        os.ftruncate(self._fd, 0)
        # The holder, then the process that started it (a ``train --nproc`` command, for rank 0):
        # that command may clean up a failed start its killed rank 0 could not (FreshStart.undo).
        os.pwrite(self._fd, f"{os.getpid()}\n{os.getppid()}\n".encode(), 0)

    def __exit__(self, *exc: Any) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


# ------------------------------------------------------------------ a fresh start, and undoing it
def trainer_files(config: TrainConfig) -> List[Path]:
    """What a fresh ``train`` would write over in ``config.out``: the entries of the trainer's own
    names there (the lock aside) and, with several runs, each ``run-K`` folder it would use."""
    out = out_dir(config)
    found = [out / name for name in RUN_FILES if name != LOCK_FILE and os.path.lexists(out / name)]
    if config.runs > 1:
        found += [folder for folder in run_dirs(config) if os.path.lexists(folder)]
    return found


def refuse_existing_run(config: TrainConfig, overwrite: bool = False) -> None:
    """Refuse a fresh ``train`` into a folder that holds a run, or files of the names the trainer
    writes (someone's ``summary.json`` or checkpoints, a finished ``run-K``), unless ``overwrite``.

    Raises
    ------
    ConfigError
        Naming the folder, what it holds, and the ways on.
    """
    found = [] if overwrite else trainer_files(config)
    if not found:
        return
    out = out_dir(config)
    names = ", ".join(str(path.relative_to(out)) for path in found[:4]) + (", ..." if len(found) > 4 else "")
    if any(
        path.name in (CONFIG_FILE, METRICS_FILE) or path.parent != out or path.name.startswith("run-") for path in found
    ):
        raise ConfigError(f"{out} already holds a run ({names}); continue it with --resume {out}, choose another "
                          "--out, or give --overwrite to replace it.")  # fmt: skip
    raise ConfigError(f"{out} holds files of the names the trainer writes ({names}); choose another --out, or give "
                      "--overwrite to replace them.")  # fmt: skip


def _remove_entry(path: Path) -> None:
    """Remove a file, or a folder with what it holds; a link is removed itself, never followed."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def remove_trainer_files(config: TrainConfig) -> List[Path]:
    """``--overwrite``: remove what :func:`refuse_existing_run` would refuse (under the run's lock)."""
    found = trainer_files(config)
    for path in found:
        _remove_entry(path)
    return found


class FreshStart:
    """What a fresh ``train`` found in ``config.out`` before it wrote anything, so that undoing a
    failed start removes only what the command created.

    A fresh start refuses a folder holding the trainer's names (or removes them under its lock, with
    ``--overwrite``), so every such name there was written by the process holding the signed lock:
    the undo removes them, the lock file if the command created it and ``out`` if it made it, and
    nothing else (a user's own files stay). It never runs for a command the lock refused: the
    holder's files are the holder's.
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.out = out_dir(config)
        self.out_existed = os.path.lexists(self.out)
        self.lock_existed = os.path.lexists(self.out / LOCK_FILE)
        #: Set once this process holds the run's lock and has signed it: only then has it written anything.
        self.locked = False

    def undo(self, files: bool = True) -> None:
        """Remove what the start created, unless an epoch finished (then say how to continue).

        Only with the run's lock held by this command (its own process, or :meth:`undo_after_ranks`).
        """
        finished = False
        for run_dir in run_dirs(self.config):
            try:
                finished = finished or (not (run_dir / METRICS_FILE).is_symlink() and bool(read_metrics(run_dir)))
            except ConfigError:  # a damaged metrics file: keep it for the user to look at
                finished = True
        if finished:
            log.info(f"{self.out} keeps the epochs that finished; continue with: revgnn-dgl train --resume {self.out}")
            return
        for path in trainer_files(self.config) if files else []:
            _remove_entry(path)
        lock = self.out / LOCK_FILE
        if not self.lock_existed and lock.is_file() and not lock.is_symlink():
            lock.unlink()
        if not self.out_existed:
            try:
                self.out.rmdir()  # only if empty: a file someone put there meanwhile stays
            except OSError:
                pass

    def undo_after_ranks(self) -> None:
        """Undo a failed ``train --nproc`` start from the command, once all its ranks have ended
        (a rank 0 stopped by a signal cannot): only when the lock is free and was signed by a rank
        this process started, or never signed."""
        if not self.out.is_dir() or self.out.is_symlink():
            return
        try:
            fd = os.open(self.out / LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except OSError:  # no lock (rank 0 never took it) or a link: nothing of this command's but maybe ``out``
            if not os.path.lexists(self.out / LOCK_FILE):
                self.undo(files=False)
            return
        try:
            try:
                acquire_lock(fd, blocking=False)
            except OSError:  # another process holds the run: its files are its own
                return
            signed = os.pread(fd, 64, 0).decode(errors="replace").split()
            if not signed:  # taken but never signed: nothing was written under it
                self.undo(files=False)
            elif len(signed) >= 2 and signed[1] == str(os.getpid()):
                self.undo()
        finally:
            os.close(fd)


# ------------------------------------------------------------------ leftovers
def remove_stale_temp_files(folder: PathLike) -> List[Path]:
    """Remove the temporary files that killed writes left behind (``.NAME.tmp*``, ``NAME.tmp*``).

    Only called under the run's lock, so no live writer owns them. Links are never followed
    (``is_file`` of a link is its target's: a link is skipped, not removed).
    """
    folder = Path(folder)
    removed = []
    if folder.is_dir() and not folder.is_symlink():
        for path in folder.iterdir():
            if path.is_symlink() or not path.is_file() or ".tmp" not in path.name:
                continue
            ours = any(path.name.startswith((f".{name}.tmp", f"{name}.tmp")) for name in RUN_FILES)
            # safetensors' own name (``.tmp`` + 6 characters), left by a kill in versions of this
            # package that wrote through safetensors.save_file; none is written any more.
            theirs = len(path.name) == 10 and path.name.startswith(".tmp") and path.name[4:].isalnum()
            if ours or theirs:
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def interruption_note(config: TrainConfig) -> str:
    """What an interrupted run kept and lost, and how to go on: for the line a stopped command prints."""
    out = out_dir(config)
    if not out.exists() or not trainer_files(config):  # a fresh run stopped before its first epoch removes its files
        return "Interrupted before the first epoch finished: nothing was kept (the same command starts again)."
    parts = []
    for run_dir in run_dirs(config):
        if not (run_dir / METRICS_FILE).is_file():
            continue
        records = read_metrics(run_dir)
        done = records[-1]["epoch"] if records else 0
        if done < config.epochs:
            parts.append(
                f"{run_dir}: epochs 1-{done} saved, epoch {done + 1} lost" if done else f"{run_dir}: epoch 1 lost"
            )
    where = "; ".join(parts) if parts else "no epoch had finished"
    return f"Interrupted ({where}); continue with: revgnn-dgl train --resume {config.out}"
