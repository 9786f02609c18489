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
from ctypes import (
    POINTER,
    c_char,
    c_char_p,
    c_double,
    c_float,
    c_int32,
    c_size_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)

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
    12: "MSDE_ERR_DIVERGED",
    13: "MSDE_ERR_TOO_LARGE",
    14: "MSDE_ERR_OUT_OF_MEMORY",
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
_U8_P = POINTER(c_uint8)
_U32_P = POINTER(c_uint32)
_SIZE_P = POINTER(c_size_t)
_ERR_P = POINTER(MsdeErrorRecord)


class ModelConfig(ctypes.Structure):
    """``msde_model_config``; fill with :meth:`Library.model_config`."""

    _fields_ = [
        ("d", c_size_t),
        ("time_features", c_size_t),
        ("time_scale", c_double),
        ("depth", c_size_t),
        ("width", c_size_t),
        ("learn_diffusion", c_uint32),
        ("diffusion_low_rank", c_uint32),
        ("diffusion_diagonal", c_uint32),
        ("warmup_epochs", c_uint32),
        ("q", c_size_t),
        ("lambda_diff", c_double),
        ("diffusion_epsilon", c_double),
        ("drift_loss", c_uint32),
        ("mass_weighting", c_uint32),
        ("target_mode", c_uint32),
        ("residual", c_uint32),
        ("drift_teacher", c_uint32),
        ("mass_threshold", c_double),
        ("flow_substeps", c_size_t),
        ("k_neighbours", c_size_t),
        ("shrinkage", c_double),
        ("target_epsilon", c_double),
        ("clip_grad_norm", c_double),
        ("clip_trace", c_double),
        ("learning_rate", c_double),
        ("beta1", c_double),
        ("beta2", c_double),
        ("adam_epsilon", c_double),
        ("weight_decay", c_double),
        ("seed", c_uint64),
    ]


class ModelInfo(ctypes.Structure):
    """``msde_model_info``."""

    _fields_ = [("d", c_size_t), ("q", c_size_t), ("params_len", c_size_t), ("learn_diffusion", c_uint32)]


class Batch(ctypes.Structure):
    """``msde_batch``: a prepared minibatch (pointer, length) pairs."""

    _fields_ = [
        (name, kind)
        for field in ("x", "t", "h", "v_hat", "mass", "y", "plan")
        for name, kind in ((field, _FLOAT_P), (field + "_len", c_size_t))
    ]


class StepLoss(ctypes.Structure):
    """``msde_step_loss``."""

    _fields_ = [
        ("drift", c_float),
        ("diffusion", c_float),
        ("lambda_", c_float),
        ("total", c_float),
        ("grad_norm", c_float),
        ("steps", c_uint64),
    ]


SAMPLE_RK4, SAMPLE_DOPRI5, SAMPLE_EULER_MARUYAMA, SAMPLE_STRANG_RK4, SAMPLE_WEAK2 = 0, 1, 2, 3, 4


class SampleConfig(ctypes.Structure):
    """``msde_sample_config``; fill with :meth:`Library.sample_config`."""

    _fields_ = [
        ("method", c_uint32),
        ("h", c_float),
        ("rtol", c_float),
        ("atol", c_float),
        ("h_min", c_float),
        ("trace_clip", c_float),
        ("max_steps", c_uint64),
        ("seed", c_uint64),
        ("block_rows", c_size_t),
    ]


class SampleReport(ctypes.Structure):
    """``msde_sample_report``."""

    _fields_ = [("accepted", c_uint64), ("rejected", c_uint64), ("evaluations", c_uint64), ("stopped", c_uint64)]

UOT_DENSE, UOT_ONLINE = 0, 1
UNTRACKED = 0xFFFFFFFF
FIT_EPOCH_FLOATS = 4


class FitConfig(ctypes.Structure):
    """``msde_fit_config``; fill with :meth:`Library.fit_config`."""

    _fields_ = [
        ("epochs", c_size_t),
        ("steps_per_epoch", c_size_t),
        ("batch", c_size_t),
        ("min_points", c_size_t),
        ("epsilon_relative", c_float),
        ("rho_relative", c_float),
        ("track_bound", c_float),
        ("uot_tol", c_float),
        ("uot_max_iter", c_uint32),
        ("validation_fraction", c_float),
        ("validation_batches", c_size_t),
        ("patience", c_size_t),
        ("validation_tolerance", c_float),
        ("final_learning_rate", c_float),
        ("bridge_epsilon", c_uint32),
        ("seed", c_uint64),
        ("cluster", ClusterConfig),
        ("validation_min_per_bin", c_size_t),
        ("divergence_factor", c_float),
        ("max_rollbacks", c_size_t),
    ]


class FitEpoch(ctypes.Structure):
    """``msde_fit_epoch``: one epoch's summary given to a progress callback."""

    _fields_ = [
        ("epoch", c_size_t),
        ("train_total", c_float),
        ("train_drift", c_float),
        ("train_diffusion", c_float),
        ("validation_total", c_float),
        ("skipped", c_size_t),
        ("whole_bins", c_size_t),
        ("best_epoch", c_size_t),
        ("rollbacks", c_size_t),
        ("learning_rate_factor", c_float),
    ]


# ``msde_fit_progress``: return 0 to go on, nonzero to stop.
FIT_PROGRESS = ctypes.CFUNCTYPE(c_int32, POINTER(FitEpoch), c_void_p)


class FitReport(ctypes.Structure):
    """``msde_fit_report``."""

    _fields_ = [
        ("epochs", c_size_t),
        ("best_epoch", c_size_t),
        ("stopped_early", c_uint32),
        ("clusters", c_size_t),
        ("train_rows", c_size_t),
        ("validation_rows", c_size_t),
        ("skipped_steps", c_size_t),
        ("whole_bin_batches", c_size_t),
        ("best_validation", c_float),
        ("steps", c_uint64),
        ("rollbacks", c_size_t),
    ]


class MatchConfig(ctypes.Structure):
    """``msde_match_config``; fill with :meth:`Library.match_config`."""

    _fields_ = [
        ("steps", c_size_t),
        ("batch", c_size_t),
        ("substeps", c_size_t),
        ("horizon", c_size_t),
        ("learning_rate", c_double),
        ("clip_grad_norm", c_double),
        ("validation_fraction", c_double),
        ("check_every", c_size_t),
        ("starts_per_step", c_size_t),
        ("diffusion_anchor", c_double),
        ("seed", c_uint64),
    ]


class MatchReport(ctypes.Structure):
    """``msde_match_report``."""

    _fields_ = [
        ("steps", c_size_t),
        ("held_out_initial", c_float),
        ("held_out_kept", c_float),
        ("kept_step", c_size_t),
        ("last_train_loss", c_float),
        ("stopped_non_finite", c_uint32),
    ]


class UotConfig(ctypes.Structure):
    """``msde_uot_config``; fill with :meth:`Library.uot_config`."""

    _fields_ = [
        ("epsilon", c_float),
        ("rho_source", c_float),
        ("rho_target", c_float),
        ("tol", c_float),
        ("max_iter", c_uint32),
        ("mode", c_uint32),
        ("translation", c_uint32),
        ("eps_scaling_stages", c_uint32),
        ("h", c_float),
        ("self_edge_bound", c_float),
    ]


class UotSummary(ctypes.Structure):
    """``msde_uot_summary``."""

    _fields_ = [
        ("objective", c_float),
        ("dual", c_float),
        ("gap", c_float),
        ("marginal_error", c_float),
        ("total_mass", c_float),
        ("iterations", c_uint32),
        ("absorptions", c_uint32),
    ]


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
    "msde_model_config_default": (c_int32, [POINTER(ModelConfig), _ERR_P]),
    "msde_model_params_len": (c_int32, [POINTER(ModelConfig), _SIZE_P, _ERR_P]),
    "msde_model_state_len": (c_int32, [POINTER(ModelConfig), _SIZE_P, _ERR_P]),
    "msde_model_init": (c_int32, [c_void_p, c_size_t, POINTER(ModelConfig), POINTER(c_void_p), _ERR_P]),
    "msde_model_bytes_config": (c_int32, [_U8_P, c_size_t, POINTER(ModelConfig), _ERR_P]),
    "msde_model_load": (c_int32, [c_void_p, c_size_t, _U8_P, c_size_t, POINTER(c_void_p), _ERR_P]),
    "msde_model_save_len": (c_int32, [c_void_p, _SIZE_P, _ERR_P]),
    "msde_model_save": (c_int32, [c_void_p, _U8_P, c_size_t, _SIZE_P, _ERR_P]),
    "msde_model_info_get": (c_int32, [c_void_p, POINTER(ModelInfo), POINTER(ModelConfig), _ERR_P]),
    "msde_model_get_params": (c_int32, [c_void_p, _FLOAT_P, c_size_t, _ERR_P]),
    "msde_model_set_params": (c_int32, [c_void_p, _FLOAT_P, c_size_t, _ERR_P]),
    "msde_model_get_inputs": (
        c_int32, [c_void_p, _FLOAT_P, c_size_t, _FLOAT_P, c_size_t, _FLOAT_P, c_size_t, _ERR_P]
    ),
    "msde_model_set_inputs": (
        c_int32, [c_void_p, _FLOAT_P, c_size_t, _FLOAT_P, c_size_t, _FLOAT_P, c_size_t, _ERR_P]
    ),
    "msde_model_eval_workspace_len": (c_int32, [c_void_p, c_size_t, _SIZE_P, _ERR_P]),
    "msde_model_drift": (
        c_int32,
        [c_void_p, _FLOAT_P, c_size_t, _FLOAT_P, c_size_t, c_size_t, _FLOAT_P, c_size_t, _FLOAT_P, c_size_t, _ERR_P],
    ),
    "msde_model_drift_factor": (
        c_int32,
        [
            c_void_p, _FLOAT_P, c_size_t, _FLOAT_P, c_size_t, c_size_t, _FLOAT_P, c_size_t,
            _FLOAT_P, c_size_t, _FLOAT_P, c_size_t, _ERR_P,
        ],
    ),
    "msde_model_new": (c_int32, [POINTER(ModelConfig), POINTER(c_void_p), _ERR_P]),
    "msde_model_load_new": (c_int32, [_U8_P, c_size_t, POINTER(c_void_p), _ERR_P]),
    "msde_model_free": (None, [c_void_p]),
    "msde_trainer_state_len": (c_int32, [c_void_p, c_size_t, c_size_t, _SIZE_P, _ERR_P]),
    "msde_trainer_init": (c_int32, [c_void_p, c_size_t, c_void_p, c_size_t, c_size_t, POINTER(c_void_p), _ERR_P]),
    "msde_trainer_model": (c_int32, [c_void_p, POINTER(c_void_p), _ERR_P]),
    "msde_trainer_step": (c_int32, [c_void_p, c_uint32, POINTER(Batch), POINTER(StepLoss), _ERR_P]),
    "msde_trainer_new": (c_int32, [c_void_p, c_size_t, c_size_t, POINTER(c_void_p), _ERR_P]),
    "msde_trainer_free": (None, [c_void_p]),
    "msde_sample_config_default": (c_int32, [c_uint32, POINTER(SampleConfig), _ERR_P]),
    "msde_sample_workspace_len": (
        c_int32, [c_void_p, POINTER(SampleConfig), c_size_t, c_size_t, c_size_t, _SIZE_P, _ERR_P]
    ),
    "msde_sample": (
        c_int32,
        [
            c_void_p, POINTER(SampleConfig), _FLOAT_P, c_size_t, c_float, _FLOAT_P, c_size_t, _FLOAT_P, c_size_t,
            _FLOAT_P, c_size_t, _FLOAT_P, c_size_t, POINTER(SampleReport), _ERR_P,
        ],
    ),
    "msde_energy_distance": (c_int32, [_FLOAT_P, c_size_t, _FLOAT_P, c_size_t, c_size_t, _FLOAT_P, _ERR_P]),
    "msde_sliced_wasserstein_workspace_len": (c_int32, [c_size_t, c_size_t, c_size_t, c_size_t, _SIZE_P, _ERR_P]),
    "msde_sliced_wasserstein": (
        c_int32,
        [_FLOAT_P, c_size_t, _FLOAT_P, c_size_t, c_size_t, c_size_t, c_uint64, _FLOAT_P, c_size_t, _FLOAT_P, _ERR_P],
    ),
    "msde_median_sq_distance_workspace_len": (c_int32, [c_size_t, c_size_t, _SIZE_P, _ERR_P]),
    "msde_median_sq_distance": (
        c_int32, [_FLOAT_P, c_size_t, _FLOAT_P, c_size_t, c_size_t, _FLOAT_P, c_size_t, _FLOAT_P, _ERR_P]
    ),
    "msde_uot_config_default": (c_int32, [c_float, POINTER(UotConfig), _ERR_P]),
    "msde_uot_workspace_len": (
        c_int32, [c_size_t, c_size_t, c_size_t, POINTER(UotConfig), c_uint32, _SIZE_P, _ERR_P]
    ),
    "msde_uot_solve": (
        c_int32,
        [
            _FLOAT_P, c_size_t, _FLOAT_P, c_size_t, _FLOAT_P, c_size_t, _FLOAT_P, c_size_t, c_size_t,
            _U32_P, c_size_t, _FLOAT_P, c_size_t, POINTER(UotConfig),
            _FLOAT_P, c_size_t, _FLOAT_P, c_size_t, _FLOAT_P, c_size_t, _FLOAT_P, c_size_t,
            _FLOAT_P, c_size_t, POINTER(UotSummary), _ERR_P,
        ],
    ),
    "msde_model_diffusion_spectrum_workspace_len": (c_int32, [c_void_p, c_size_t, _SIZE_P, _ERR_P]),
    "msde_model_diffusion_spectrum": (
        c_int32,
        [
            c_void_p, _FLOAT_P, c_size_t, _FLOAT_P, c_size_t, c_size_t, _FLOAT_P, c_size_t,
            _FLOAT_P, c_size_t, _FLOAT_P, c_size_t, _FLOAT_P, c_size_t, _ERR_P,
        ],
    ),
    "msde_model_propagated_diffusion_workspace_len": (c_int32, [c_void_p, c_size_t, c_size_t, _SIZE_P, _ERR_P]),
    "msde_model_propagated_diffusion": (
        c_int32,
        [
            c_void_p, _FLOAT_P, c_size_t, _FLOAT_P, c_size_t, _FLOAT_P, c_size_t, c_size_t,
            _FLOAT_P, c_size_t, _FLOAT_P, c_size_t, _FLOAT_P, c_size_t, _FLOAT_P, c_size_t,
            _FLOAT_P, c_size_t, _ERR_P,
        ],
    ),
    "msde_match_config_default": (c_int32, [POINTER(MatchConfig), _ERR_P]),
    "msde_match_workspace_len": (c_int32, [c_void_p, c_size_t, POINTER(MatchConfig), _SIZE_P, _SIZE_P, _ERR_P]),
    "msde_model_match": (
        c_int32,
        [
            c_void_p, POINTER(MatchConfig), _FLOAT_P, c_size_t, _FLOAT_P, c_size_t, _FLOAT_P, c_size_t,
            _U32_P, c_size_t, POINTER(MatchReport), _ERR_P,
        ],
    ),
    "msde_fit_config_default": (c_int32, [POINTER(FitConfig), _ERR_P]),
    "msde_fit_workspace_len": (c_int32, [c_void_p, c_size_t, POINTER(FitConfig), _SIZE_P, _SIZE_P, _ERR_P]),
    "msde_trainer_fit": (
        c_int32,
        [
            c_void_p, POINTER(FitConfig), _FLOAT_P, c_size_t, _FLOAT_P, c_size_t, _U32_P, c_size_t,
            _FLOAT_P, c_size_t, _U32_P, c_size_t, _FLOAT_P, c_size_t, FIT_PROGRESS, c_void_p,
            POINTER(FitReport), _ERR_P,
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


def u32s(values):
    """A C uint32 array holding ``values`` and its length."""
    values = list(values)
    return (c_uint32 * len(values))(*values), len(values)


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

    # --- model -----------------------------------------------------------

    def model_config(self, **fields):
        """Default ``msde_model_config`` with ``fields`` overriding."""
        cfg = ModelConfig()
        self.call("msde_model_config_default", ctypes.byref(cfg))
        for name, value in fields.items():
            setattr(cfg, name, value)
        return cfg

    def model_new(self, cfg):
        """A heap model (std builds) initialised from ``cfg.seed``."""
        return Model(self, self._handle("msde_model_new", ctypes.byref(cfg)), owned=True)

    def model_in_memory(self, cfg):
        """A model placed in Python-owned memory (the no-allocator path)."""
        need = c_size_t()
        self.call("msde_model_state_len", ctypes.byref(cfg), ctypes.byref(need))
        mem = state_memory(need.value)
        handle = self._handle("msde_model_init", mem, need.value, ctypes.byref(cfg))
        return Model(self, handle, owned=False, memory=mem)

    def model_load(self, data):
        """A heap model from bytes written by :meth:`Model.save`."""
        buf, n = byte_buffer(data)
        return Model(self, self._handle("msde_model_load_new", buf, n), owned=True)

    def _handle(self, name, *args):
        out = c_void_p()
        self.call(name, *args, ctypes.byref(out))
        return out

    # --- metrics ---------------------------------------------------------

    def energy_distance(self, x, y, d):
        xx, nx = floats(x)
        yy, ny = floats(y)
        out = c_float()
        self.call("msde_energy_distance", xx, nx, yy, ny, d, ctypes.byref(out))
        return out.value

    def sliced_wasserstein(self, x, y, d, projections, seed):
        xx, nx = floats(x)
        yy, ny = floats(y)
        ws_len = c_size_t()
        self.call("msde_sliced_wasserstein_workspace_len", nx // d, ny // d, d, projections, ctypes.byref(ws_len))
        out = c_float()
        self.call(
            "msde_sliced_wasserstein", xx, nx, yy, ny, d, projections, seed,
            empty(ws_len.value), ws_len.value, ctypes.byref(out),
        )
        return out.value

    # --- unbalanced optimal transport -------------------------------------

    def uot_config(self, epsilon, /, **fields):
        """Default ``msde_uot_config`` for regularisation ``epsilon``, with
        ``fields`` overriding."""
        cfg = UotConfig()
        self.call("msde_uot_config_default", epsilon, ctypes.byref(cfg))
        for name, value in fields.items():
            setattr(cfg, name, value)
        return cfg

    def median_sq_distance(self, x, y, d):
        """Median squared distance between the clouds x and y (the scale
        to give UOT's epsilon relative to)."""
        xx, nx = floats(x)
        yy, ny = floats(y)
        ws_len, out = c_size_t(), c_float()
        self.call("msde_median_sq_distance_workspace_len", nx // d, ny // d, ctypes.byref(ws_len))
        self.call("msde_median_sq_distance", xx, nx, yy, ny, d, empty(ws_len.value), ws_len.value, ctypes.byref(out))
        return out.value

    def uot_solve(self, x, y, a, b, d, cfg, pairs=(), bounds=(), plan=False, workspace_fill=0.0):
        """Solves the transport from x (n*d) weighted a to y (m*d) weighted
        b. ``pairs``: flat (i, j) track indices; ``bounds``: optional
        per-pair bounds. Returns a dict with row_mass, col_mass, velocity,
        plan (None unless ``plan``) and the UotSummary."""
        xx, x_len = floats(x)
        yy, y_len = floats(y)
        aa, n = floats(a)
        bb, m = floats(b)
        pp, p_len = u32s(pairs)
        bd, b_len = floats(bounds)
        ws_len = c_size_t()
        self.call("msde_uot_workspace_len", n, m, d, ctypes.byref(cfg), int(plan), ctypes.byref(ws_len))
        rows, cols, vel = empty(n), empty(m), empty(n * d)
        pl = empty(n * m if plan else 0)
        summary = UotSummary()
        self.call(
            "msde_uot_solve", xx, x_len, yy, y_len, aa, n, bb, m, d, pp, p_len, bd, b_len, ctypes.byref(cfg),
            rows, n, cols, m, vel, n * d, pl, len(pl),
            floats([workspace_fill] * ws_len.value)[0], ws_len.value, ctypes.byref(summary),
        )
        return dict(
            row_mass=list(rows), col_mass=list(cols), velocity=list(vel),
            plan=list(pl) if plan else None, summary=summary,
        )

    def fit_config(self, /, **fields):
        """Default ``msde_fit_config`` with ``fields`` overriding (``cluster``
        fields through ``cfg.cluster``)."""
        cfg = FitConfig()
        self.call("msde_fit_config_default", ctypes.byref(cfg))
        for name, value in fields.items():
            setattr(cfg, name, value)
        return cfg

    def match_config(self, /, **fields):
        """Default ``msde_match_config`` with ``fields`` overriding."""
        cfg = MatchConfig()
        self.call("msde_match_config_default", ctypes.byref(cfg))
        for name, value in fields.items():
            setattr(cfg, name, value)
        return cfg

    def sample_config(self, method, /, **fields):
        cfg = SampleConfig()
        self.call("msde_sample_config_default", method, ctypes.byref(cfg))
        for name, value in fields.items():
            setattr(cfg, name, value)
        return cfg


def state_memory(nbytes):
    """Zeroed memory of ``nbytes`` bytes aligned to 8 (MSDE_STATE_ALIGN)."""
    return (c_uint64 * ((nbytes + 7) // 8))()


def byte_buffer(data):
    buf = (c_uint8 * len(data)).from_buffer_copy(data)
    return buf, len(data)


class Model:
    """A model handle. Heap models are freed by :meth:`close` (or when
    collected); models in caller memory keep that memory alive."""

    def __init__(self, lib, handle, owned, memory=None, keep=None):
        self.lib, self.handle, self.owned, self.memory, self.keep = lib, handle, owned, memory, keep

    def close(self):
        if self.owned and self.handle:
            self.lib.lib.msde_model_free(self.handle)
        self.handle = None

    def __del__(self):
        self.close()

    def info(self):
        info, cfg = ModelInfo(), ModelConfig()
        self.lib.call("msde_model_info_get", self.handle, ctypes.byref(info), ctypes.byref(cfg))
        return info, cfg

    def params(self):
        info, _ = self.info()
        out = empty(info.params_len)
        self.lib.call("msde_model_get_params", self.handle, out, info.params_len)
        return list(out)

    def set_params(self, values):
        buf, n = floats(values)
        self.lib.call("msde_model_set_params", self.handle, buf, n)

    def inputs(self):
        """(mean d, scale d, time span [t_min, t_max]): the standardisation
        (z - mean) / scale the network works in and the span its time
        features are clamped to ([-FLT_MAX, FLT_MAX]: none)."""
        info, _ = self.info()
        mean, scale, span = empty(info.d), empty(info.d), empty(2)
        self.lib.call("msde_model_get_inputs", self.handle, mean, info.d, scale, info.d, span, 2)
        return list(mean), list(scale), list(span)

    def set_inputs(self, mean, scale, time_span):
        """Sets the standardisation and the time span (see :meth:`inputs`)."""
        (m, m_len), (s, s_len), (ts, ts_len) = floats(mean), floats(scale), floats(time_span)
        self.lib.call("msde_model_set_inputs", self.handle, m, m_len, s, s_len, ts, ts_len)

    def _eval(self, z, t, factor):
        info, _ = self.info()
        zz, z_len = floats(z)
        tt, rows = floats(t)
        ws_len = c_size_t()
        self.lib.call("msde_model_eval_workspace_len", self.handle, rows, ctypes.byref(ws_len))
        f, ws = empty(rows * info.d), empty(ws_len.value)
        if not factor:
            self.lib.call("msde_model_drift", self.handle, zz, z_len, tt, rows, rows, f, len(f), ws, len(ws))
            return list(f)
        l = empty(rows * info.d * info.q)
        self.lib.call(
            "msde_model_drift_factor", self.handle, zz, z_len, tt, rows, rows, f, len(f), l, len(l), ws, len(ws)
        )
        return list(f), list(l)

    def match(self, cfg, z, t):
        """Runs the distribution-matching stage on this model over raw
        snapshots ``z`` (n*d) at times ``t`` (n): the model keeps the
        parameters with the lowest held-out rollout loss. Returns the
        MatchReport."""
        zz, z_len = floats(z)
        tt, n = floats(t)
        fl, il = c_size_t(), c_size_t()
        self.lib.call("msde_match_workspace_len", self.handle, n, ctypes.byref(cfg), ctypes.byref(fl), ctypes.byref(il))
        report = MatchReport()
        self.lib.call(
            "msde_model_match", self.handle, ctypes.byref(cfg), zz, z_len, tt, n,
            empty(fl.value), fl.value, empty_u32(il.value), il.value, ctypes.byref(report),
        )
        return report

    def drift(self, z, t):
        """Drift f (rows*d) at states ``z`` (rows*d) and times ``t``."""
        return self._eval(z, t, False)

    def drift_factor(self, z, t):
        """(drift rows*d, factor L rows*d*q)."""
        return self._eval(z, t, True)

    def diffusion_spectrum(self, z, t, workspace_fill=0.0):
        """D = L L^T at states ``z`` (rows*d) and times ``t``: (eigenvalues
        rows*d, eigenvectors rows*d*d (columns of each d x d block), D
        rows*d*d)."""
        info, _ = self.info()
        zz, z_len = floats(z)
        tt, rows = floats(t)
        ws_len = c_size_t()
        self.lib.call("msde_model_diffusion_spectrum_workspace_len", self.handle, rows, ctypes.byref(ws_len))
        d = info.d
        w, v, dm = empty(rows * d), empty(rows * d * d), empty(rows * d * d)
        self.lib.call(
            "msde_model_diffusion_spectrum", self.handle, zz, z_len, tt, rows, rows, w, len(w), v, len(v),
            dm, len(dm), floats([workspace_fill] * ws_len.value)[0], ws_len.value,
        )
        return list(w), list(v), list(dm)

    def propagated_diffusion(self, z, t, h, substeps=4, moments=None, y=None, workspace_fill=0.0):
        """Explicit propagated D estimates (rows*d*d) at starts ``z``
        (rows*d), times ``t`` and gaps ``h``, from local second moments of
        flow residuals per unit time (``moments``, rows*d*d) or from single
        pairs' end points ``y`` (rows*d). Returns (estimates, flow end
        points rows*d)."""
        info, _ = self.info()
        d = info.d
        zz, z_len = floats(z)
        tt, rows = floats(t)
        hh, h_len = floats(h)
        mm, m_len = floats(moments or [])
        yy, y_len = floats(y or [])
        ws_len = c_size_t()
        self.lib.call(
            "msde_model_propagated_diffusion_workspace_len", self.handle, rows, substeps, ctypes.byref(ws_len)
        )
        out, flow = empty(rows * d * d), empty(rows * d)
        self.lib.call(
            "msde_model_propagated_diffusion", self.handle, zz, z_len, tt, rows, hh, h_len, substeps,
            mm, m_len, yy, y_len, out, len(out), flow, len(flow),
            floats([workspace_fill] * ws_len.value)[0], ws_len.value,
        )
        return list(out), list(flow)

    def save(self):
        """Model bytes (``bytes``)."""
        n = c_size_t()
        self.lib.call("msde_model_save_len", self.handle, ctypes.byref(n))
        out, written = (c_uint8 * n.value)(), c_size_t()
        self.lib.call("msde_model_save", self.handle, out, n.value, ctypes.byref(written))
        return bytes(out[: written.value])

    def sample(self, cfg, start, t0, times, n, workspace_fill=0.0):
        """n trajectories: (out n*K*d, stop_times n, SampleReport). The
        workspace starts filled with ``workspace_fill`` (tests: NaN)."""
        info, _ = self.info()
        ss, s_len = floats(start)
        tt, k = floats(times)
        ws_len = c_size_t()
        self.lib.call("msde_sample_workspace_len", self.handle, ctypes.byref(cfg), n, k, 0, ctypes.byref(ws_len))
        out, stop, report = empty(n * k * info.d), empty(n), SampleReport()
        self.lib.call(
            "msde_sample", self.handle, ctypes.byref(cfg), ss, s_len, t0, tt, k, out, len(out), stop, n,
            floats([workspace_fill] * ws_len.value)[0], ws_len.value, ctypes.byref(report),
        )
        return list(out), list(stop), report

    def trainer(self, n_max, m_max=0):
        """A heap trainer over a copy of this model."""
        handle = self.lib._handle("msde_trainer_new", self.handle, n_max, m_max)
        return Trainer(self.lib, handle)


class Trainer:
    """A heap trainer handle (``msde_trainer_new`` / ``msde_trainer_free``)."""

    def __init__(self, lib, handle):
        self.lib, self.handle = lib, handle

    def close(self):
        if self.handle:
            self.lib.lib.msde_trainer_free(self.handle)
        self.handle = None

    def __del__(self):
        self.close()

    def model(self):
        """The model being trained (borrowed: valid while the trainer is)."""
        return Model(self.lib, self.lib._handle("msde_trainer_model", self.handle), owned=False, keep=self)

    def fit(self, cfg, z, t, track=(), workspace_fill=0.0, progress=None):
        """Trains on raw snapshots ``z`` (n*d) at times ``t`` (n) with
        optional track ids (UNTRACKED for untracked rows). ``progress``:
        optional ``f(FitEpoch) -> bool`` called after every epoch, True
        stops training. Returns (per-epoch losses as lists [train total,
        drift, diffusion, validation total], FitReport)."""
        zz, z_len = floats(z)
        tt, n = floats(t)
        tr, tr_len = u32s(track)
        model = self.lib._handle("msde_trainer_model", self.handle)
        fl, il = c_size_t(), c_size_t()
        self.lib.call("msde_fit_workspace_len", model, n, ctypes.byref(cfg), ctypes.byref(fl), ctypes.byref(il))
        losses, report = empty(cfg.epochs * FIT_EPOCH_FLOATS), FitReport()
        callback = FIT_PROGRESS(lambda e, _user: int(bool(progress(e.contents)))) if progress else FIT_PROGRESS()
        self.lib.call(
            "msde_trainer_fit", self.handle, ctypes.byref(cfg), zz, z_len, tt, n, tr, tr_len,
            floats([workspace_fill] * fl.value)[0], fl.value, empty_u32(il.value), il.value,
            losses, len(losses), callback, None, ctypes.byref(report),
        )
        k = FIT_EPOCH_FLOATS
        return [list(losses[e * k:(e + 1) * k]) for e in range(cfg.epochs)], report

    def step(self, epoch, **arrays):
        """One step on a minibatch given as lists: x, t, h, v_hat, mass and
        optionally y, plan. Returns StepLoss."""
        batch, keep = make_batch(**arrays)
        loss = StepLoss()
        self.lib.call("msde_trainer_step", self.handle, epoch, ctypes.byref(batch), ctypes.byref(loss))
        del keep
        return loss


def make_batch(**arrays):
    """An ``msde_batch`` over C copies of ``arrays`` (and the copies, which
    must stay alive while the batch is used)."""
    batch, keep = Batch(), []
    for name, values in arrays.items():
        if values is None:
            setattr(batch, name, None)
            setattr(batch, name + "_len", 0)
            continue
        buf, n = floats(values)
        keep.append(buf)
        setattr(batch, name, ctypes.cast(buf, _FLOAT_P))
        setattr(batch, name + "_len", n)
    return batch, keep
