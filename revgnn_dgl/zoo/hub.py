"""Where pretrained checkpoints live, and how they get there (download or manual import).

Checkpoints are cached in ``cache_dir() / "checkpoints"``; the cache root is the environment
variable ``REVGNN_DGL_CACHE``, else ``$XDG_CACHE_HOME/revgnn_dgl``, else
``~/.cache/revgnn_dgl``. A model card's ``checkpoint`` section says where its file comes from::

    checkpoint:
      source: official | url | bundled | none
      file: revgnn-deep.safetensors     # name in the cache (bundled: path in the zoo folder)
      sha256: ...                       # of that file; verified when present
      url: ...                          # a directly downloadable file
      official_file: revgnn_deep.pth    # present: the weights must be imported by hand
      how: ...                          # what to do, in words

``bundled`` weights ship with the package: ``file`` is a path relative to the zoo folder (the
package's ``revgnn_dgl/zoo/cards/``), e.g.
``weights/revgnn-cora-64.safetensors``, and ``sha256`` (required) is verified on every load.

The official RevGNN weights are published in a Google Drive *folder*, which cannot be
downloaded as a file: such cards are "manual import", and :func:`pretrained_path` explains the
``revgnn-dgl zoo import`` command and where the converted file goes.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from ..errors import CheckpointError
from ..files import whole_file
from .checkpoint import sha256_file
from .registry import CARDS_DIR

PathLike = Union[str, "os.PathLike[str]"]

ENV_CACHE = "REVGNN_DGL_CACHE"
_CHUNK = 1 << 20


def cache_dir() -> Path:
    """The cache root: ``$REVGNN_DGL_CACHE``, else ``$XDG_CACHE_HOME/revgnn_dgl``, else ``~/.cache/revgnn_dgl``."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "revgnn_dgl"


def checkpoints_dir() -> Path:
    """The folder of cached checkpoints, ``cache_dir() / "checkpoints"`` (not created here)."""
    return cache_dir() / "checkpoints"


def checkpoint_file(config: Mapping[str, Any]) -> Path:
    """The cache path of a model card's checkpoint (its ``checkpoint.file``, else ``NAME.safetensors``)."""
    section = config.get("checkpoint") or {}
    filename = section.get("file") or f"{config['name']}.safetensors"
    if Path(filename).name != filename:  # a card must not point outside the cache
        raise CheckpointError(
            f"model card {config.get('name')!r}: checkpoint.file must be a plain file name, got {filename!r}."
        )
    return checkpoints_dir() / filename


def is_manual_import(section: Mapping[str, Any]) -> bool:
    """Whether a card's weights must be imported by hand rather than downloaded.

    True for cards naming an ``official_file`` (to be converted), cards without a ``url``, and
    URLs of Google Drive folders (a folder is no downloadable file).
    """
    url = section.get("url") or ""
    return bool(section.get("official_file")) or not url or "/folders/" in url


def pretrained_path(config: Mapping[str, Any]) -> Path:
    """The local path of a model card's pretrained checkpoint, downloading it if the card allows.

    A cached file is used as it is (never fetched again) once its SHA-256 matches the card's,
    when the card records one.

    Parameters
    ----------
    config : mapping
        A model card (:func:`revgnn_dgl.get_config`), with a ``checkpoint`` section.

    Returns
    -------
    Path
        The verified checkpoint file.

    Raises
    ------
    CheckpointError
        The card has no weights; the cached file's hash is wrong (delete it); the weights must
        be imported by hand (the message says how, and where the file goes); or the download
        failed.
    """
    name = config.get("name", "?")
    section = config.get("checkpoint") or {}
    source = str(section.get("source") or "none").lower()
    how = " ".join(str(section.get("how") or "").split())
    if source == "none":
        raise CheckpointError(f"model {name!r} has no pretrained weights. {how}".strip())
    if source == "bundled":
        return bundled_path(config)
    dest = checkpoint_file(config)
    expected = section.get("sha256") or None
    if dest.is_file():
        if expected:
            actual = sha256_file(dest)
            if actual != str(expected).lower():
                raise CheckpointError(
                    f"the cached checkpoint {dest} has sha256 {actual}, but the card of {name!r} expects {expected}: "
                    f"it is corrupted or from another release. Delete it and "
                    + ("import it again." if is_manual_import(section) else "it will be downloaded again.")
                )
        return dest
    if is_manual_import(section):
        what = how or f"Convert the official weights with `revgnn-dgl zoo import FILE --model {name}`."
        url = f" (URL: {section['url']})" if section.get("url") else ""
        raise CheckpointError(
            f"the pretrained weights of {name!r} are not in the cache and must be imported by hand: "
            f"{what}{url} The converted checkpoint goes to {dest}."
        )
    return download(section["url"], dest, expected)


def zoo_dir() -> Path:
    """The folder of the model cards, which bundled checkpoint paths are relative to."""
    return CARDS_DIR


def bundled_path(config: Mapping[str, Any]) -> Path:
    """The verified checkpoint file of a card whose weights ship with the package (``source: bundled``).

    Raises
    ------
    CheckpointError
        The card has no ``file`` or ``sha256``, its ``file`` leaves the zoo folder, the file is
        missing, or its SHA-256 differs from the card's (a tampered or truncated copy).
    """
    name = config.get("name", "?")
    section = config.get("checkpoint") or {}
    filename, expected = section.get("file"), section.get("sha256")
    if not filename or not expected:
        raise CheckpointError(f"model card {name!r}: bundled weights need checkpoint.file and checkpoint.sha256.")
    relative = Path(str(filename))
    if relative.is_absolute() or ".." in relative.parts:
        raise CheckpointError(
            f"model card {name!r}: checkpoint.file must be a path inside the zoo folder, got {filename!r}."
        )
    folder = zoo_dir()
    path = folder / relative
    if not path.is_file():
        raise CheckpointError(
            f"the bundled weights of {name!r} are missing: {path} does not exist (an incomplete installation?)."
        )
    actual = sha256_file(path)
    if actual != str(expected).lower():
        raise CheckpointError(
            f"the bundled checkpoint {path} has sha256 {actual}, but the card of {name!r} expects {expected}: "
            f"it was modified or is incomplete. Reinstall the package."
        )
    return path


def download(url: str, dest: PathLike, sha256: Optional[str] = None, *, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest``, verifying its SHA-256 before it is put in place.

    The file is streamed to a temporary file beside ``dest`` and renamed onto ``dest`` only when
    complete and, if ``sha256`` is given, matching; otherwise the temporary file is deleted.

    Parameters
    ----------
    url : str
        A directly downloadable file (``http(s)://`` or ``file://``).
    dest : str or PathLike
        The final path; its folder is created.
    sha256 : str, optional
        The expected hex digest.
    timeout : float
        Seconds to wait for the server at each step.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    CheckpointError
        On a network error (the message says where to put a file fetched by other means) or a
        hash mismatch.
    """
    dest = Path(dest)
    digest = hashlib.sha256()
    with whole_file(dest, "wb", error=CheckpointError, suffix=".part") as out:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    digest.update(block)
                    out.write(block)
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", None) or err
            raise CheckpointError(
                f"could not download {url} ({reason}). If this machine is offline, fetch the file elsewhere and "
                f"put it at {dest}."
            ) from None
        actual = digest.hexdigest()
        if sha256 and actual != str(sha256).lower():  # raised inside: nothing replaces dest
            raise CheckpointError(
                f"the file downloaded from {url} has sha256 {actual}, expected {sha256}; it was discarded "
                f"and nothing was written to {dest}."
            )
    return dest
