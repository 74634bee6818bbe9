"""Restricted unpicklers: the Planetoid one, and the pieces the torch one shares.

The Planetoid files are Python 2 pickles. ``pickle.load`` on a file can run
arbitrary code, so they are read with an unpickler that resolves only the
few classes these files contain and refuses every other global.
:mod:`revgnn_dgl.data.safe_torch` builds its torch-file unpickler from the
same pieces: :class:`AllowListMixin`, :class:`RefusedGlobalError` and
:data:`PLAIN_GLOBALS`.
"""

from __future__ import annotations

import io
import pickle
from collections import defaultdict
from typing import Any, BinaryIO, Mapping

import numpy as np
import scipy.sparse as sp

try:  # numpy >= 2 moved the array internals to numpy._core
    from numpy._core.multiarray import _reconstruct  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the numpy version
    from numpy.core.multiarray import _reconstruct  # type: ignore[attr-defined]


class RefusedGlobalError(pickle.UnpicklingError):
    """A pickle named a global outside the unpickler's allow-list.

    Attributes
    ----------
    global_name : str
        ``'module.name'`` as the pickle spells it, e.g. ``'posix.system'``.
    """

    def __init__(self, module: str, name: str, allowed: str) -> None:
        self.global_name = f"{module}.{name}"
        super().__init__(f"refusing to load global {self.global_name}: only {allowed} are allowed")


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """``_codecs.encode`` as Python 3 pickles ``bytes`` under protocol 2: only
    ``(str, 'latin1')``, so a pickle cannot reach other codecs."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with {encoding!r}: only latin1 bytes are allowed")
    return text.encode("latin1")


#: Plain containers and ``bytes``, in their Python 2 and 3 spellings: safe
#: for any restricted unpickler.
PLAIN_GLOBALS: dict[tuple[str, str], Any] = {
    **{(module, "list"): list for module in ("__builtin__", "builtins")},
    **{(module, "dict"): dict for module in ("__builtin__", "builtins")},
    # Python 3 writes bytes as _codecs.encode(str, 'latin1') under protocol 2.
    ("_codecs", "encode"): _latin1_bytes,
}


class AllowListMixin:
    """``find_class`` that resolves only the ``(module, name)`` pairs of
    :attr:`allowed` and raises :class:`RefusedGlobalError` for any other.

    Mix it in before a :class:`pickle.Unpickler` class.
    """

    #: ``(module, name)`` as written in the pickle -> object.
    allowed: Mapping[tuple[str, str], Any] = PLAIN_GLOBALS
    #: What :attr:`allowed` holds, for the refusal message.
    allowed_description: str = "lists and dicts"

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except (KeyError, TypeError):  # TypeError: an unhashable name from a damaged pickle
            raise RefusedGlobalError(str(module), str(name), self.allowed_description) from None


# Python 2 and old numpy/scipy spellings map to their current homes.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("scipy.sparse.csr", "csr_matrix"): sp.csr_matrix,
    ("scipy.sparse._csr", "csr_matrix"): sp.csr_matrix,
    ("scipy.sparse", "csr_matrix"): sp.csr_matrix,
    ("collections", "defaultdict"): defaultdict,
    **PLAIN_GLOBALS,
}


class RestrictedUnpickler(AllowListMixin, pickle.Unpickler):
    """Unpickler that only resolves numpy arrays, scipy CSR matrices, lists,
    dicts and ``collections.defaultdict`` (as written by Python 2, or by
    Python 3 with protocols 2 to 4).

    Raises
    ------
    RefusedGlobalError
        A :class:`pickle.UnpicklingError`, when the pickle refers to any
        other global.
    """

    allowed = _ALLOWED
    allowed_description = "numpy arrays, scipy CSR matrices, lists, dicts and defaultdicts"


def restricted_load(file: BinaryIO | bytes) -> Any:
    """Unpickle a Python 2 or 3 pickle with :class:`RestrictedUnpickler`.

    Parameters
    ----------
    file : binary file or bytes
        The pickle's bytes, or an open binary file.

    Returns
    -------
    object
        The unpickled object.
    """
    if isinstance(file, bytes):
        file = io.BytesIO(file)
    # latin1 turns Python 2 byte strings (numpy's raw buffers) back into bytes.
    return RestrictedUnpickler(file, encoding="latin1").load()
