"""morphosde through ctypes: the C ABI from Python with the standard library
only (NumPy optional, never required).

Every function of the C ABI used here has its ``argtypes`` and ``restype``
declared (without them a ``size_t`` or pointer result is silently
truncated). Failures raise :class:`MorphosdeError` carrying the status code,
its name and the library's message naming the argument at fault.

The library is found from ``$MORPHOSDE_LIB`` or, failing that, next to this
file's repository (``target/release/libmorphosde.so``).
"""

import ctypes
import os
from array import array
from ctypes import POINTER, c_char, c_char_p, c_float, c_int32, c_size_t, c_uint32, c_uint64

ERROR_MESSAGE_LEN = 256

STATUS_NAMES = {
    0: "MSDE_OK",
    1: "MSDE_ERR_NULL_POINTER",
    2: "MSDE_ERR_BAD_DIMENSION",
    3: "MSDE_ERR_NON_FINITE",
    4: "MSDE_ERR_BAD_CONFIG",
    5: "MSDE_ERR_BUFFER_TOO_SMALL",
    6: "MSDE_ERR_CORRUPT_MODEL",
    7: "MSDE_ERR_VERSION_MISMATCH",
    8: "MSDE_ERR_NOT_CONVERGED",
    9: "MSDE_ERR_NUMERICAL",
    10: "MSDE_ERR_INTERNAL",
    11: "MSDE_ERR_MISALIGNED",
}


class MsdeErrorRecord(ctypes.Structure):
    """``msde_error``: the optional per-call error record."""

    _fields_ = [("status", c_int32), ("message", c_char * ERROR_MESSAGE_LEN)]


class MorphosdeError(Exception):
    """A call returned a status other than MSDE_OK."""

    def __init__(self, status, message):
        self.status = status
        self.name = STATUS_NAMES.get(status, "unknown")
        self.message = message
        super().__init__(f"{self.name} ({status}): {message}")


def _default_library_path():
    env = os.environ.get("MORPHOSDE_LIB")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(here, "..", "..", "target", "release", "libmorphosde.so")


CLUSTER_EIGENVALUES = 33
SIGMA_Z_GIVEN, SIGMA_Z_MEDIAN, SIGMA_Z_SELF_TUNING = 0, 1, 2


class ClusterConfig(ctypes.Structure):
    """``msde_cluster_config``; fill with :meth:`Library.cluster_config`."""

    _fields_ = [
        ("k", c_size_t),
        ("choose_k", c_uint32),
        ("sigma_z_mode", c_uint32),
        ("sigma_z", c_float),
        ("sigma_t", c_float),
        ("sigma_z_neighbour", c_size_t),
        ("knn_neighbours", c_size_t),
        ("restarts", c_size_t),
        ("kmeans_max_iter", c_size_t),
        ("eigen_max_iter", c_size_t),
        ("seed", c_uint64),
        ("memory_limit_bytes", c_size_t),
    ]


class ClusterSummary(ctypes.Structure):
    """``msde_cluster_summary``."""

    _fields_ = [
        ("k", c_size_t),
        ("inertia", c_float),
        ("sigma_z", c_float),
        ("eigen_count", c_size_t),
        ("eigenvalues", c_float * CLUSTER_EIGENVALUES),
    ]


_FLOAT_P = POINTER(c_float)
_U32_P = POINTER(c_uint32)
_SIZE_P = POINTER(c_size_t)
_ERR_P = POINTER(MsdeErrorRecord)

# name: (restype, argtypes) for every function this module calls.
_SIGNATURES = {
    "msde_version": (c_uint32, []),
    "msde_abi_version": (c_uint32, []),
    "msde_version_string": (c_char_p, []),
    "msde_status_str": (c_char_p, [c_int32]),
    "msde_eigen_sym_workspace_len": (c_int32, [c_size_t, _SIZE_P, _ERR_P]),
    "msde_eigen_sym": (
        c_int32,
        [_FLOAT_P, c_size_t, c_size_t, _FLOAT_P, c_size_t, _FLOAT_P, c_size_t, _FLOAT_P, c_size_t, _ERR_P],
    ),
    "msde_cluster_config_default": (c_int32, [c_size_t, c_float, POINTER(ClusterConfig), _ERR_P]),
    "msde_cluster_workspace_len": (
        c_int32,
        [c_size_t, c_size_t, POINTER(ClusterConfig), _SIZE_P, _SIZE_P, _ERR_P],
    ),
    "msde_cluster": (
        c_int32,
        [
            _FLOAT_P, c_size_t, _FLOAT_P, c_size_t, c_size_t, c_size_t, POINTER(ClusterConfig),
            _U32_P, c_size_t, _FLOAT_P, c_size_t, _U32_P, c_size_t, POINTER(ClusterSummary), _ERR_P,
        ],
    ),
}


def floats(values):
    """A C float array holding ``values`` (any iterable of numbers, or a
    NumPy array, which is flattened in row-major order)."""
    if hasattr(values, "ravel"):
        values = values.ravel().tolist()
    buf = array("f", values)
    return (c_float * len(buf)).from_buffer(buf), len(buf)


def empty(n):
    """A zeroed C float array of length ``n``."""
    return (c_float * n)()


def empty_u32(n):
    """A zeroed C uint32 array of length ``n``."""
    return (c_uint32 * n)()


class Library:
    """The loaded shared library with every used signature declared."""

    def __init__(self, path=None):
        self.path = path or _default_library_path()
        self.lib = ctypes.CDLL(self.path)
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(self.lib, name)
            fn.restype = restype
            fn.argtypes = argtypes

    def call(self, name, *args):
        """Calls ``name`` with an error record appended; raises on failure."""
        err = MsdeErrorRecord()
        status = getattr(self.lib, name)(*args, ctypes.byref(err))
        if status != 0:
            raise MorphosdeError(status, err.message.decode("utf-8", "replace"))

    def version(self):
        """(major, minor, patch) of the loaded library."""
        v = self.lib.msde_version()
        return (v >> 16, (v >> 8) & 0xFF, v & 0xFF)

    def version_string(self):
        return self.lib.msde_version_string().decode()

    def status_str(self, status):
        return self.lib.msde_status_str(status).decode()

    def eigen_sym(self, matrix, d):
        """Eigen-decomposition of a symmetric d×d matrix given row-major.
        Returns (eigenvalues descending, eigenvectors as a list of columns)."""
        a, a_len = floats(matrix)
        ws_len = c_size_t()
        self.call("msde_eigen_sym_workspace_len", d, ctypes.byref(ws_len))
        w, v, ws = empty(d), empty(d * d), empty(ws_len.value)
        self.call("msde_eigen_sym", a, a_len, d, w, d, v, d * d, ws, ws_len.value)
        vectors = [[v[r * d + k] for r in range(d)] for k in range(d)]
        return list(w), vectors

    def cluster_config(self, k, sigma_t, /, **fields):
        """Default ``msde_cluster_config`` for ``k`` clusters and time
        bandwidth ``sigma_t``, with ``fields`` overriding."""
        cfg = ClusterConfig()
        self.call("msde_cluster_config_default", k, sigma_t, ctypes.byref(cfg))
        for name, value in fields.items():
            setattr(cfg, name, value)
        return cfg

    def cluster_workspace_len(self, n, d, cfg):
        """(float workspace length, uint32 workspace length)."""
        fl, il = c_size_t(), c_size_t()
        self.call("msde_cluster_workspace_len", n, d, ctypes.byref(cfg), ctypes.byref(fl), ctypes.byref(il))
        return fl.value, il.value

    def cluster(self, z, t, d, cfg):
        """Time-weighted spectral clustering of points ``z`` (n*d, row-major)
        at times ``t`` (n). Returns (labels, ClusterSummary)."""
        zz, z_len = floats(z)
        tt, n = floats(t)
        fl, il = self.cluster_workspace_len(n, d, cfg)
        labels, summary = empty_u32(n), ClusterSummary()
        self.call(
            "msde_cluster", zz, z_len, tt, n, n, d, ctypes.byref(cfg), labels, n,
            empty(fl), fl, empty_u32(il), il, ctypes.byref(summary),
        )
        return list(labels), summary
