"""A restricted unpickler for the Planetoid files.

The Planetoid files are Python 2 pickles. ``pickle.load`` on a file can run
arbitrary code, so they are read with an unpickler that resolves only the
few classes these files contain and refuses every other global.
"""
from __future__ import annotations

import codecs
import io
import pickle
from collections import defaultdict
from typing import Any, BinaryIO

import numpy as np
import scipy.sparse as sp

try:  # numpy >= 2 moved the array internals to numpy._core
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - depends on the numpy version
    from numpy.core.multiarray import _reconstruct

# (module, name) as written in the pickle -> object. Python 2 and old
# numpy/scipy spellings map to their current homes.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("scipy.sparse.csr", "csr_matrix"): sp.csr_matrix,
    ("scipy.sparse._csr", "csr_matrix"): sp.csr_matrix,
    ("scipy.sparse", "csr_matrix"): sp.csr_matrix,
    ("collections", "defaultdict"): defaultdict,
    ("__builtin__", "list"): list,
    ("builtins", "list"): list,
    ("__builtin__", "dict"): dict,
    ("builtins", "dict"): dict,
    # Python 3 writes bytes as _codecs.encode(str, 'latin1') under protocol 2.
    ("_codecs", "encode"): codecs.encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only resolves numpy arrays, scipy CSR matrices, lists,
    dicts and ``collections.defaultdict`` (as written by Python 2, or by
    Python 3 with protocols 2 to 4).

    Raises
    ------
    pickle.UnpicklingError
        When the pickle refers to any other global.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only numpy arrays, scipy CSR "
                "matrices, lists, dicts and defaultdicts are allowed"
            ) from None


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
