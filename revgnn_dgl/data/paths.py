"""Where the offline datasets live (importable without DGL or torch).

One convention for every loader: the *data root* is the folder that holds
the dataset folders (``cora/``, ``citeseer/``, ``humloc/``,
``amazon_computers/``, ...). It is, in order of precedence,

1. the ``root`` argument (``--root DIR`` on the command line);
2. the environment variable ``REVGNN_DGL_DATA``;
3. the per-user folder ``~/.cache/revgnn_dgl/data`` (under ``$REVGNN_DGL_CACHE`` or
   ``$XDG_CACHE_HOME`` when set), when it exists;
4. in a checkout of the repository (not an installed wheel), ``../shared/data``
   beside it, when it exists;
5. else the per-user folder again, which the error message then names.

Without ``root`` or ``REVGNN_DGL_DATA``, each dataset is looked for in 3, then 4
(:func:`default_dataset_folder`): a per-user folder holding other datasets does
not hide the checkout's copy of this one.

A dataset's own folder is accepted as ``root`` too: it is recognised by its
files (or, when it holds none of them yet, by its name).

ogbn-proteins follows OGB's convention, which is the same: its root holds
``ogbn_proteins/``. Without ``root`` or ``REVGNN_DGL_DATA`` it defaults to a
writable cache, ``~/.cache/revgnn_dgl/datasets``, since OGB downloads there.

>>> from revgnn_dgl.data.paths import dataset_folder
>>> dataset_folder("cora", "/data").as_posix()
'/data/cora'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional, Union

from ..errors import DatasetError

#: Environment variable naming the data root, the folder that holds the
#: offline dataset folders (``cora/``, ``citeseer/``, ``humloc/``, ...).
DATA_ENV_VAR = "REVGNN_DGL_DATA"

#: The project checkout: the folder holding the ``revgnn_dgl`` package.
PROJECT_ROOT = Path(__file__).resolve().parents[2]

#: OGB's root when neither ``root`` nor ``REVGNN_DGL_DATA`` is given.
DEFAULT_OGB_ROOT = Path("~/.cache/revgnn_dgl/datasets")

PathLike = Union[str, "os.PathLike[str]"]


def user_data_root() -> Path:
    """The per-user data root: ``data/`` in revgnn_dgl's cache (``$REVGNN_DGL_CACHE``, else
    ``$XDG_CACHE_HOME/revgnn_dgl``, else ``~/.cache/revgnn_dgl``)."""
    cache = os.environ.get("REVGNN_DGL_CACHE")
    if cache:
        return Path(cache).expanduser() / "data"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "revgnn_dgl" / "data"


def checkout_data_root() -> Optional[Path]:
    """``../shared/data`` beside the repository checkout this package runs from; None for an
    installed package (whose folder's parent is ``site-packages``, no checkout)."""
    if not (PROJECT_ROOT / "setup.py").is_file() or not (PROJECT_ROOT / "revgnn_dgl").is_dir():
        return None
    return PROJECT_ROOT.parent / "shared" / "data"


def default_data_root() -> Path:
    """The data root without a ``root`` argument: ``$REVGNN_DGL_DATA``, else the per-user
    folder if it exists, else a checkout's ``../shared/data`` if it exists, else the per-user folder."""
    base = os.environ.get(DATA_ENV_VAR)
    if base:
        return Path(base).expanduser()
    user = user_data_root()
    if user.is_dir():
        return user
    checkout = checkout_data_root()
    return checkout if checkout is not None and checkout.is_dir() else user


def default_dataset_folder(folder_name: str) -> Path:
    """One dataset's folder when no ``root`` is given: under ``$REVGNN_DGL_DATA`` when set; else
    the first of the per-user folder and a checkout's ``../shared/data`` that holds
    ``folder_name/``; else under :func:`default_data_root` (which a missing dataset's error names)."""
    if not os.environ.get(DATA_ENV_VAR):
        for base in (user_data_root(), checkout_data_root()):
            if base is not None and (base / folder_name).is_dir():
                return base / folder_name
    return default_data_root() / folder_name


def dataset_folder(folder_name: str, root: Optional[PathLike] = None, files: Iterable[str] = ()) -> Path:
    """The folder one dataset's files are read from.

    Parameters
    ----------
    folder_name : str
        The dataset's folder under the data root, e.g. ``'cora'``.
    root : str or PathLike, optional
        The data root (the folder holding ``folder_name/``), or the dataset's
        own folder. Default: :func:`default_dataset_folder`.
    files : iterable of str
        Names (or glob patterns) of the dataset's files: a ``root`` holding
        any of them is the dataset's own folder.

    Returns
    -------
    pathlib.Path
        ``root`` itself when it is the dataset's folder (it holds one of
        ``files``, or it is named ``folder_name`` and has no ``folder_name``
        sub-folder), else ``root / folder_name``.

    Raises
    ------
    DatasetError
        When ``root`` is a file.
    """
    if root is None:
        return default_dataset_folder(folder_name)
    root = _folder(root, folder_name)
    if any(next(iter(root.glob(pattern)), None) is not None for pattern in files):
        return root
    if root.name == folder_name and not (root / folder_name).is_dir():
        return root
    return root / folder_name


def root_hint(folder_name: str) -> str:
    """The command-line wording of how to point a loader at its data."""
    return (
        f"pass --root DIR or set {DATA_ENV_VAR}=DIR, DIR being the folder that holds "
        f"{folder_name}/ (or that folder itself)"
    )


def ogb_root(folder_name: str, root: Optional[PathLike] = None) -> Path:
    """OGB's root for an OGB dataset whose folder is ``folder_name``.

    ``root`` when given (its parent when ``root`` is the dataset's own folder,
    named ``folder_name`` or ``folder_name + '_dgl'``, or holding OGB's
    ``RELEASE_v*.txt``), else ``$REVGNN_DGL_DATA``, else
    :data:`DEFAULT_OGB_ROOT`.
    """
    if root is None:
        base = os.environ.get(DATA_ENV_VAR)
        return (Path(base) if base else DEFAULT_OGB_ROOT).expanduser()
    root = _folder(root, folder_name)
    own_name = root.name in (folder_name, folder_name + "_dgl") and not (root / folder_name).is_dir()
    if own_name or next(iter(root.glob("RELEASE_v*.txt")), None) is not None:
        return root.parent
    return root


def _folder(root: PathLike, folder_name: str) -> Path:
    """``root`` as a Path; a :class:`DatasetError` when it names a file."""
    root = Path(root).expanduser()
    if root.is_file():
        raise DatasetError(f"the data root {root} is a file, not a folder: {root_hint(folder_name)}")
    return root


#: File name endings that make a dataset name a graph file path.
GRAPH_FILE_SUFFIXES = (".bin", ".dgl")


def is_graph_file_path(name: str) -> bool:
    """Whether ``name`` is read as the path of a DGL graph file, not a dataset name.

    True when it contains a path separator, ends in ``.bin`` or ``.dgl``, or
    names an existing file or folder.

    >>> is_graph_file_path("runs/graph.bin"), is_graph_file_path("cora"), is_graph_file_path("g.dgl")
    (True, False, True)
    """
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return any(sep in name for sep in separators) or name.endswith(GRAPH_FILE_SUFFIXES) or Path(name).exists()
