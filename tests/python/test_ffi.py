"""Tests of the ctypes client over the C ABI: every call, including the
error paths. Run by `cargo test` (ffi/tests/python_client.rs), which sets
MORPHOSDE_LIB; standard library only."""

import ctypes
import json
import math
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python"))

import morphosde  # noqa: E402

LIB = morphosde.Library()
NAN = float("nan")
INF = float("inf")
FLT_MAX = 3.4028234663852886e38

# Inputs and the Rust core's results on them, written by
# ffi/tests/python_client.rs; absent when this file is run by hand.
EXPECTED = None
if os.environ.get("MSDE_EXPECTED"):
    with open(os.environ["MSDE_EXPECTED"]) as f:
        EXPECTED = json.load(f)
needs_expected = unittest.skipUnless(EXPECTED, "MSDE_EXPECTED not set (run through cargo test)")


def f32(x):
    """x rounded to float32 (what a c_float holds)."""
    return ctypes.c_float(x).value


class CallCase(unittest.TestCase):
    def assert_fails(self, name, args, status, word=None, sentinels=()):
        """The call returns ``status`` with ``word`` in its message and leaves
        every (array, index) in ``sentinels`` untouched."""
        before = [a[i] for a, i in sentinels]
        with self.assertRaises(morphosde.MorphosdeError) as ctx:
            LIB.call(name, *args)
        self.assertEqual(ctx.exception.status, status, ctx.exception)
        if word is not None:
            self.assertIn(word, ctx.exception.message)
        after = [a[i] for a, i in sentinels]
        self.assertEqual(repr(before), repr(after), f"{name} wrote an output on failure")


class Version(unittest.TestCase):
    def test_version_agrees_everywhere(self):
        major, minor, patch = LIB.version()
        self.assertEqual(LIB.version_string(), f"{major}.{minor}.{patch}")
        self.assertEqual(LIB.lib.msde_abi_version(), 7)

    def test_every_header_function_is_declared_and_exercised(self):
        """Every function of include/morphosde.h has ctypes signatures in
        the client and is called by these tests or the client."""
        import re

        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, "..", "..", "include", "morphosde.h")) as f:
            names = set(re.findall(r"^(?:const )?\w+ \*?(msde_\w+)\(", f.read(), re.M))
        self.assertGreater(len(names), 40)
        self.assertEqual(sorted(names - set(morphosde._SIGNATURES)), [])
        with open(__file__) as f:
            tests = f.read()
        with open(morphosde.__file__) as f:
            # The client's code after its signature table.
            client_body = f.read().split("def floats(values):", 1)[1]
        code = tests + client_body
        called = [n for n in names if f'"{n}"' in code or f"lib.{n}(" in code]
        self.assertEqual(sorted(names - set(called)), [])

    def test_status_strings(self):
        self.assertEqual(LIB.status_str(0), "ok")
        self.assertEqual(LIB.status_str(5), "buffer too small")
        self.assertEqual(LIB.status_str(99), "unknown status")
        self.assertEqual(LIB.status_str(-7), "unknown status")


class Eigen(unittest.TestCase):
    # D = L L^T for L = [[1,0,0],[0.5,0.8,0],[0.2,-0.3,0.4]].
    D = [1.0, 0.5, 0.2, 0.5, 0.89, -0.14, 0.2, -0.14, 0.29]

    def test_decomposition_reconstructs_matrix(self):
        w, vecs = LIB.eigen_sym(self.D, 3)
        self.assertTrue(w[0] >= w[1] >= w[2] > 0)
        self.assertAlmostEqual(sum(w), 2.18, places=5)
        for i in range(3):
            for j in range(3):
                rebuilt = sum(w[k] * vecs[k][i] * vecs[k][j] for k in range(3))
                self.assertAlmostEqual(rebuilt, self.D[3 * i + j], places=5)

    def test_error_paths(self):
        ws_len = ctypes.c_size_t()
        LIB.call("msde_eigen_sym_workspace_len", 3, ctypes.byref(ws_len))
        a, a_len = morphosde.floats(self.D)
        w, v = morphosde.empty(3), morphosde.empty(9)
        ws = morphosde.empty(ws_len.value)
        cases = [
            # (arguments, expected status, word in the message)
            ((a, a_len, 3, w, 3, v, 9, ws, ws_len.value - 1), 5, "workspace"),
            ((a, a_len - 1, 3, w, 3, v, 9, ws, ws_len.value), 2, "a"),
            ((None, a_len, 3, w, 3, v, 9, ws, ws_len.value), 1, "a"),
            ((a, a_len, 3, None, 3, v, 9, ws, ws_len.value), 1, "w"),
            ((a, a_len, 0, w, 0, v, 0, ws, ws_len.value), 2, "d"),
            ((a, a_len, 65, w, 3, v, 9, ws, ws_len.value), 2, "d"),
        ]
        for args, status, word in cases:
            w[0] = -12345.0
            with self.assertRaises(morphosde.MorphosdeError) as ctx:
                LIB.call("msde_eigen_sym", *args)
            self.assertEqual(ctx.exception.status, status, ctx.exception)
            self.assertIn(word, ctx.exception.message)
            self.assertEqual(w[0], -12345.0, "output written on failure")
        nan, n = morphosde.floats([math.nan] + self.D[1:])
        with self.assertRaises(morphosde.MorphosdeError) as ctx:
            LIB.call("msde_eigen_sym", nan, n, 3, w, 3, v, 9, ws, ws_len.value)
        self.assertEqual(ctx.exception.status, 3)
        with self.assertRaises(morphosde.MorphosdeError) as ctx:
            LIB.call("msde_eigen_sym_workspace_len", 3, None)
        self.assertEqual(ctx.exception.status, 1)


class Cluster(CallCase):
    def setUp(self):
        case = EXPECTED["cluster"][0] if EXPECTED else None
        self.case = case

    def args(self, case, cfg, **over):
        """Arguments of msde_cluster for ``case`` with workspaces of the
        queried size; ``over`` replaces any by name."""
        z, z_len = morphosde.floats(case["z"])
        t, n = morphosde.floats(case["t"])
        fl, il = LIB.cluster_workspace_len(n, case["d"], cfg)
        a = dict(
            z=z, z_len=z_len, t=t, t_len=n, n=n, d=case["d"], cfg=ctypes.byref(cfg),
            labels=morphosde.empty_u32(n), labels_len=n, fw=morphosde.empty(fl), fw_len=fl,
            iw=morphosde.empty_u32(il), iw_len=il, summary=morphosde.ClusterSummary(),
        )
        a.update(over)
        return a

    @staticmethod
    def call_args(a):
        summary = a["summary"]
        return [
            a["z"], a["z_len"], a["t"], a["t_len"], a["n"], a["d"], a["cfg"], a["labels"], a["labels_len"],
            a["fw"], a["fw_len"], a["iw"], a["iw_len"], ctypes.byref(summary) if summary is not None else None,
        ]

    def config(self, case, **fields):
        base = dict(seed=case["seed"], knn_neighbours=case["knn_neighbours"])
        base.update(fields)
        cfg = LIB.cluster_config(case["k"], case["sigma_t"], **base)
        return cfg

    def test_defaults(self):
        cfg = LIB.cluster_config(4, 1.5)
        self.assertEqual(
            (cfg.k, cfg.choose_k, cfg.sigma_z_mode, cfg.sigma_t, cfg.knn_neighbours, cfg.restarts),
            (4, 0, morphosde.SIGMA_Z_SELF_TUNING, 1.5, 15, 10),
        )
        self.assertEqual(cfg.sigma_z_neighbour, 7)
        self.assertEqual((cfg.kmeans_max_iter, cfg.eigen_max_iter, cfg.seed), (100, 200, 0))
        self.assertEqual(cfg.memory_limit_bytes, 1 << 30)

    @needs_expected
    def test_equals_rust_core_and_ignores_dirty_workspace(self):
        for case in EXPECTED["cluster"]:
            cfg = self.config(case)
            a = self.args(case, cfg)
            self.assertEqual((a["fw_len"], a["iw_len"]), (case["float_ws"], case["index_ws"]))
            LIB.call("msde_cluster", *self.call_args(a))
            self.assertEqual(list(a["labels"]), case["labels"])
            s = a["summary"]
            self.assertEqual((s.k, s.inertia, s.sigma_z), (case["summary_k"], case["inertia"], case["sigma_z"]))
            self.assertEqual(list(s.eigenvalues[: s.eigen_count]), case["eigenvalues"])
            # The same call with NaN-filled / all-ones workspaces and no summary.
            dirty = self.args(case, cfg, summary=None)
            for i in range(dirty["fw_len"]):
                dirty["fw"][i] = NAN
            for i in range(dirty["iw_len"]):
                dirty["iw"][i] = 0xFFFFFFFF
            LIB.call("msde_cluster", *self.call_args(dirty))
            self.assertEqual(list(dirty["labels"]), case["labels"])
            # The convenience wrapper agrees.
            labels, _ = LIB.cluster(case["z"], case["t"], case["d"], cfg)
            self.assertEqual(labels, case["labels"])

    def test_bad_input(self):
        case = self.case or {
            "z": [0.0, 0.0, 0.1, 0.0, 3.0, 0.0, 3.1, 0.1],
            "t": [0.0, 0.0, 1.0, 1.0],
            "d": 2, "k": 2, "sigma_t": 2.0, "seed": 0, "knn_neighbours": 0,
        }
        cfg = self.config(case)
        base = self.args(case, cfg)
        n = base["n"]
        nan_z, _ = morphosde.floats([NAN] + case["z"][1:])
        inf_t, _ = morphosde.floats(case["t"][:-1] + [math.inf])

        def bad_cfg(**fields):
            return ctypes.byref(self.config(case, **fields))

        odd = (ctypes.c_char * (4 * base["fw_len"] + 4))()
        misaligned = ctypes.cast(ctypes.addressof(odd) + 1, ctypes.POINTER(ctypes.c_float))
        table = [
            # (replaced arguments, status, word in the message)
            (dict(z=None), 1, "z"),
            (dict(t=None), 1, "t"),
            (dict(cfg=None), 1, "config"),
            (dict(labels=None), 1, "labels"),
            (dict(fw=None), 1, "float_ws"),
            (dict(z_len=base["z_len"] - 1), 2, "z"),
            (dict(t_len=n + 1), 2, "t"),
            (dict(labels_len=n - 1), 2, "labels"),
            (dict(n=0), 2, "n"),
            (dict(d=0), 2, "n"),
            (dict(n=1 << 62, z_len=1 << 62), 13, None),
            (dict(z=nan_z), 3, "z"),
            (dict(t=inf_t), 3, "t"),
            (dict(cfg=bad_cfg(k=0)), 4, "k"),
            (dict(cfg=bad_cfg(k=33)), 4, "k"),
            (dict(cfg=bad_cfg(k=n + 1)), 4, "k"),
            (dict(cfg=bad_cfg(choose_k=2)), 4, "choose_k"),
            (dict(cfg=bad_cfg(sigma_z_mode=7)), 4, "sigma_z_mode"),
            (dict(cfg=bad_cfg(sigma_z_mode=morphosde.SIGMA_Z_GIVEN, sigma_z=NAN)), 4, "sigma_z"),
            (dict(cfg=bad_cfg(sigma_z_mode=morphosde.SIGMA_Z_SELF_TUNING, sigma_z_neighbour=0)), 4, "sigma_z"),
            (dict(cfg=bad_cfg(sigma_t=-1.0)), 4, "sigma_t"),
            (dict(cfg=bad_cfg(sigma_t=NAN)), 4, "sigma_t"),
            (dict(cfg=bad_cfg(restarts=0)), 4, "restarts"),
            (dict(cfg=bad_cfg(knn_neighbours=n)), 4, "mode"),
            (dict(cfg=bad_cfg(memory_limit_bytes=16)), 4, "memory_limit_bytes"),
            (dict(fw_len=base["fw_len"] - 1), 5, "float_ws"),
            (dict(iw_len=base["iw_len"] - 1), 5, "index_ws"),
            (dict(fw=misaligned), 11, "float_ws"),
        ]
        for over, status, word in table:
            a = dict(base)
            a.update(over)
            base["labels"][0] = 77
            base["summary"].k = 999
            with self.subTest(over=over):
                self.assert_fails(
                    "msde_cluster", self.call_args(a), status, word,
                    sentinels=[(base["labels"], 0), (base["labels"], n - 1)],
                )
                self.assertEqual(base["summary"].k, 999)
        # The size query refuses what the call refuses, and NULL outputs.
        fl = ctypes.c_size_t(12345)
        il = ctypes.c_size_t()
        bad = self.config(case, k=0)
        self.assert_fails("msde_cluster_workspace_len", (n, 2, ctypes.byref(bad), ctypes.byref(fl), ctypes.byref(il)), 4, "k")
        self.assertEqual(fl.value, 12345)
        self.assert_fails("msde_cluster_workspace_len", (n, 2, ctypes.byref(cfg), None, ctypes.byref(il)), 1, "float_len")
        self.assert_fails("msde_cluster_workspace_len", (n, 2, None, ctypes.byref(fl), ctypes.byref(il)), 1, "config")
        self.assert_fails("msde_cluster_config_default", (3, 1.0, None), 1, "out")
        # The call still works after all of that.
        LIB.call("msde_cluster", *self.call_args(base))


def small_model_config(**extra):
    """The config of ffi/tests/python_client.rs's small model."""
    fields = dict(d=2, time_features=2, depth=1, width=8, learn_diffusion=1, seed=3)
    if EXPECTED:
        fields = dict(EXPECTED["model"]["config"])
    fields.update(extra)
    return LIB.model_config(**fields)


class Model(CallCase):
    @needs_expected
    def test_defaults_are_the_rust_cores(self):
        cfg = LIB.model_config()
        for name, value in EXPECTED["defaults"]["model"].items():
            self.assertEqual(getattr(cfg, name), value, name)

    def test_sizes(self):
        cfg = LIB.model_config(d=2, time_features=8, depth=3, width=128, learn_diffusion=0)
        n, state = ctypes.c_size_t(), ctypes.c_size_t()
        LIB.call("msde_model_params_len", ctypes.byref(cfg), ctypes.byref(n))
        LIB.call("msde_model_state_len", ctypes.byref(cfg), ctypes.byref(state))
        # Inputs (mean, scale, time span) + encoder (10->128, 128->128 x2) + drift head (128->2).
        self.assertEqual(n.value, 6 + 10 * 128 + 128 + 2 * (128 * 128 + 128) + 128 * 2 + 2)
        self.assertGreater(state.value, 4 * n.value)

    @needs_expected
    def test_init_eval_and_bytes_equal_rust_core(self):
        case = EXPECTED["model"]
        cfg = small_model_config()
        heap = LIB.model_new(cfg)
        placed = LIB.model_in_memory(cfg)
        for model in (heap, placed):
            self.assertEqual(model.params(), case["params"])
            info, back = model.info()
            self.assertEqual((info.d, info.q, info.learn_diffusion), (2, case["q"], 1))
            self.assertEqual((back.width, back.seed), (8, 3))
            self.assertEqual(model.drift(case["z"], case["t"]), case["f"])
            f, l = model.drift_factor(case["z"], case["t"])
            self.assertEqual((f, l), (case["f"], case["l"]))
            self.assertEqual(list(model.save()), case["bytes"])
        loaded = LIB.model_load(bytes(case["bytes"]))
        self.assertEqual(loaded.params(), case["params"])
        # Loading into caller memory sized from the stored config.
        buf, n = morphosde.byte_buffer(bytes(case["bytes"]))
        stored = morphosde.ModelConfig()
        LIB.call("msde_model_bytes_config", buf, n, ctypes.byref(stored))
        need = ctypes.c_size_t()
        LIB.call("msde_model_state_len", ctypes.byref(stored), ctypes.byref(need))
        mem = morphosde.state_memory(need.value)
        handle = ctypes.c_void_p()
        LIB.call("msde_model_load", mem, need.value, buf, n, ctypes.byref(handle))
        self.assertEqual(handle.value, ctypes.addressof(mem))
        self.assertEqual(morphosde.Model(LIB, handle, owned=False, memory=mem).params(), case["params"])

    def test_dirty_workspace_gives_identical_results(self):
        model = LIB.model_new(small_model_config())
        z, t = [0.1, -0.4, 1.2, 0.3, -2.0, 0.5], [0.0, 0.5, 1.0]
        zz, _ = morphosde.floats(z)
        tt, _ = morphosde.floats(t)
        ws_len = ctypes.c_size_t()
        LIB.call("msde_model_eval_workspace_len", model.handle, 3, ctypes.byref(ws_len))
        results = []
        for fill in (0.0, NAN):
            ws = morphosde.floats([fill] * ws_len.value)[0]
            f, l = morphosde.empty(6), morphosde.empty(12)
            LIB.call("msde_model_drift_factor", model.handle, zz, 6, tt, 3, 3, f, 6, l, 12, ws, ws_len.value)
            results.append((list(f), list(l)))
        self.assertEqual(repr(results[0]), repr(results[1]))

    def test_bad_input(self):
        model = LIB.model_new(small_model_config())
        drift_only = LIB.model_new(small_model_config(learn_diffusion=0))
        rows = 3
        z, _ = morphosde.floats([0.1] * 6)
        t, _ = morphosde.floats([0.0] * 3)
        nan_z, _ = morphosde.floats([0.1] * 5 + [NAN])
        ws_len = ctypes.c_size_t()
        LIB.call("msde_model_eval_workspace_len", model.handle, rows, ctypes.byref(ws_len))
        ws = morphosde.empty(ws_len.value)
        f, l = morphosde.empty(6), morphosde.empty(12)
        base = [model.handle, z, 6, t, 3, rows, f, 6, l, 12, ws, ws_len.value]
        garbage = morphosde.state_memory(4096)
        table = [
            ({0: None}, 1, "model"),
            ({0: ctypes.addressof(garbage)}, 6, "model"),
            ({1: None}, 1, "z"),
            ({2: 5}, 2, "z"),
            ({5: 0, 2: 0, 4: 0, 7: 0, 9: 0}, 2, "rows"),
            ({1: nan_z}, 3, "z"),
            ({9: 11}, 2, "l"),
            ({11: ws_len.value - 1}, 5, "workspace"),
            ({0: drift_only.handle}, 4, "model"),
        ]
        for over, status, word in table:
            args = list(base)
            for i, v in over.items():
                args[i] = v
            f[0] = l[0] = 55.0
            with self.subTest(over=over):
                self.assert_fails("msde_model_drift_factor", args, status, word, sentinels=[(f, 0), (l, 0)])
        # Bad configs are refused with the field named, by every call taking one.
        for field, value in [
            ("d", 0), ("d", 65), ("depth", 9), ("time_features", 3), ("learn_diffusion", 2),
            ("drift_loss", 5), ("residual", 4), ("drift_teacher", 2), ("learning_rate", NAN), ("shrinkage", 1.5),
            ("beta2", 1.0),
            ("time_scale", 0.0), ("time_scale", -1.0), ("time_scale", NAN), ("time_scale", INF),
        ]:
            cfg = small_model_config(**{field: value})
            out = ctypes.c_size_t(7)
            with self.subTest(field=field):
                self.assert_fails("msde_model_params_len", (ctypes.byref(cfg), ctypes.byref(out)), 4, field)
                self.assertEqual(out.value, 7)
                handle = ctypes.c_void_p()
                self.assert_fails("msde_model_new", (ctypes.byref(cfg), ctypes.byref(handle)), 4, field)
                self.assertIsNone(handle.value)
        # A time scale is taken and kept.
        _, back = LIB.model_new(small_model_config(time_scale=1 / 42)).info()
        self.assertEqual(back.time_scale, 1 / 42)
        # Every residual up to MSDE_RESIDUAL_PROPAGATED_FROZEN (3) is taken and kept.
        for residual in range(4):
            _, back = LIB.model_new(small_model_config(residual=residual)).info()
            self.assertEqual(back.residual, residual)
        # Both drift teachers (MSDE_DRIFT_TEACHER_CHORD 0, FLOW 1) are taken and kept.
        for teacher in range(2):
            _, back = LIB.model_new(small_model_config(drift_teacher=teacher)).info()
            self.assertEqual(back.drift_teacher, teacher)
        # Caller memory: NULL, short, misaligned.
        cfg = small_model_config()
        need = ctypes.c_size_t()
        LIB.call("msde_model_state_len", ctypes.byref(cfg), ctypes.byref(need))
        mem = morphosde.state_memory(need.value + 8)
        handle = ctypes.c_void_p()
        for args, status, word in [
            ((None, need.value), 1, "mem"),
            ((mem, need.value - 1), 5, "mem_bytes"),
            ((ctypes.addressof(mem) + 4, need.value), 11, "mem"),
        ]:
            self.assert_fails("msde_model_init", args + (ctypes.byref(cfg), ctypes.byref(handle)), status, word)
        self.assertIsNone(handle.value)
        # Parameters: wrong length, NaN; the model is unchanged.
        before = model.params()
        p, n = morphosde.floats(before)
        self.assert_fails("msde_model_set_params", (model.handle, p, n - 1), 2, "params")
        p[3] = NAN
        self.assert_fails("msde_model_set_params", (model.handle, p, n), 3, "params")
        self.assertEqual(model.params(), before)
        # Saving into a short buffer.
        n = ctypes.c_size_t()
        LIB.call("msde_model_save_len", model.handle, ctypes.byref(n))
        out, written = (ctypes.c_uint8 * n.value)(), ctypes.c_size_t(99)
        self.assert_fails("msde_model_save", (model.handle, out, n.value - 1, ctypes.byref(written)), 5, "out")
        self.assertEqual(written.value, 99)
        # Free accepts NULL; the model still works after all of the above.
        LIB.lib.msde_model_free(None)
        self.assertEqual(len(model.drift([0.0, 0.0], [0.0])), 2)

    def test_truncated_altered_and_foreign_bytes_are_refused(self):
        model = LIB.model_new(small_model_config())
        good = model.save()
        altered = bytearray(good)
        altered[len(good) // 2] ^= 0x40
        version = bytearray(good)
        version[8] = 99
        cases = [
            (good[:10], 6), (good[:-1], 6), (bytes(altered), 6), (b"NOTAMODEL" * 20, 6), (bytes(version), 7),
        ]
        for data, status in cases:
            buf, n = morphosde.byte_buffer(data)
            handle = ctypes.c_void_p()
            with self.subTest(len=len(data), status=status):
                self.assert_fails("msde_model_load_new", (buf, n, ctypes.byref(handle)), status, "bytes")
                self.assertIsNone(handle.value)
                cfg = morphosde.ModelConfig()
                self.assert_fails("msde_model_bytes_config", (buf, n, ctypes.byref(cfg)), status, "bytes")
        self.assert_fails("msde_model_load_new", (None, 5, ctypes.byref(ctypes.c_void_p())), 1, "bytes")


class ModelInputs(CallCase):
    @needs_expected
    def test_inputs_round_trip_and_give_answers_in_user_units(self):
        case = EXPECTED["model"]
        model = LIB.model_new(small_model_config())
        self.assertEqual(model.inputs(), ([0.0, 0.0], [1.0, 1.0], [-FLT_MAX, FLT_MAX]))
        inputs = (case["inputs_mean"], case["inputs_scale"], case["inputs_span"])
        model.set_inputs(*inputs)
        self.assertEqual(model.inputs(), inputs)
        self.assertEqual(model.drift_factor(case["z"], case["t"]), (case["f_inputs"], case["l_inputs"]))
        # The block heads the parameters and travels in the model bytes.
        self.assertEqual(model.params()[:6], inputs[0] + inputs[1] + inputs[2])
        self.assertEqual(LIB.model_load(model.save()).inputs(), inputs)

    def test_bad_inputs_change_nothing(self):
        model = LIB.model_new(small_model_config())
        before = model.params()
        (m, _), (s, _), (ts, _) = morphosde.floats([0.0, 0.0]), morphosde.floats([1.0, 1.0]), morphosde.floats([0, 1])
        nan_m, zero_s, reversed_ts = morphosde.floats([NAN, 0.0])[0], morphosde.floats([1.0, 0.0])[0], \
            morphosde.floats([1.0, 0.0])[0]
        for args, status, word in [
            ((model.handle, m, 1, s, 2, ts, 2), 2, "mean"),
            ((model.handle, m, 2, s, 3, ts, 2), 2, "scale"),
            ((model.handle, m, 2, s, 2, ts, 1), 2, "time_span"),
            ((model.handle, nan_m, 2, s, 2, ts, 2), 3, "mean"),
            ((model.handle, m, 2, zero_s, 2, ts, 2), 4, "scale"),
            ((model.handle, m, 2, s, 2, reversed_ts, 2), 4, "time_span"),
            ((None, m, 2, s, 2, ts, 2), 1, "model"),
        ]:
            with self.subTest(word=word, status=status):
                self.assert_fails("msde_model_set_inputs", args, status, word)
        out = morphosde.floats([7.0, 7.0])[0]
        self.assert_fails(
            "msde_model_get_inputs", (model.handle, out, 2, out, 1, out, 2), 2, "scale", sentinels=[(out, 0)]
        )
        # Parameters whose input block has a zero scale are refused too.
        p, n = morphosde.floats(before)
        p[2] = 0.0
        self.assert_fails("msde_model_set_params", (model.handle, p, n), 4, "params")
        self.assertEqual(model.params(), before)

    def test_fit_sets_the_data_standardisation_and_span(self):
        z, t, track = toy_snapshots()
        trainer = LIB.model_new(small_model_config()).trainer(n_max=1)
        trainer.fit(fit_config(Fit.SMALL), z, t, track)
        mean, scale, span = trainer.model().inputs()
        for k in range(2):
            column = [f32(v) for v in z[k::2]]
            mu = sum(column) / len(column)
            sd = math.sqrt(sum((v - mu) ** 2 for v in column) / len(column))
            self.assertAlmostEqual(mean[k], mu, places=6)
            self.assertAlmostEqual(scale[k], sd, places=6)
        self.assertEqual(span, [0.0, f32(0.4)])

    def test_a_step_standardises_its_batch(self):
        """A step of a model with mean (0.5, -1) and scale (2, 1/4) on a batch
        equals, bit for bit, a step of the identity model on the batch
        standardised by hand (exact in float32 at these scales)."""
        batch = Trainer.batch(self)
        mean, scale = [0.5, -1.0], [2.0, 0.25]
        states = lambda v: [f32((f32(x) - mean[k % 2]) / scale[k % 2]) for k, x in enumerate(v)]
        by_hand = dict(batch, x=states(batch["x"]), y=states(batch["y"]),
                       v_hat=[f32(x) / scale[k % 2] for k, x in enumerate(batch["v_hat"])])
        scaled = LIB.model_new(small_model_config())
        scaled.set_inputs(mean, scale, [-FLT_MAX, FLT_MAX])
        a, b = scaled.trainer(n_max=6), LIB.model_new(small_model_config()).trainer(n_max=6)
        for epoch in range(3):
            la, lb = a.step(epoch, **batch), b.step(epoch, **by_hand)
            self.assertEqual((la.drift, la.diffusion, la.total), (lb.drift, lb.diffusion, lb.total))
        self.assertEqual(a.model().params()[6:], b.model().params()[6:])
        self.assertEqual(a.model().inputs()[:2], (mean, scale))
        self.assertNotEqual(b.model().params()[6:], LIB.model_new(small_model_config()).params()[6:])


class Trainer(CallCase):
    def batch(self):
        if EXPECTED:
            c = EXPECTED["train"]
            return {k: c[k] for k in ("x", "t", "h", "v_hat", "mass", "y")}
        n = 6
        return dict(
            x=[0.1 * i for i in range(2 * n)], t=[0.5] * n, h=[0.1] * n,
            v_hat=[0.2] * (2 * n), mass=[1.0] * n, y=[0.1 * i + 0.02 for i in range(2 * n)],
        )

    @needs_expected
    def test_steps_equal_rust_core_in_heap_and_caller_memory(self):
        case = EXPECTED["train"]
        model = LIB.model_new(small_model_config())
        # Heap trainer.
        trainer = model.trainer(n_max=8)
        totals = [trainer.step(epoch, **self.batch()).total for epoch in range(3)]
        self.assertEqual(totals, case["totals"])
        self.assertEqual(trainer.model().params(), case["params"])
        # The source model is a copy, untouched.
        self.assertEqual(model.params(), EXPECTED["model"]["params"])
        # Caller-memory trainer with a NaN-filled (dirty) block.
        need = ctypes.c_size_t()
        LIB.call("msde_trainer_state_len", model.handle, 6, 0, ctypes.byref(need))
        mem = morphosde.state_memory(need.value)
        ctypes.memset(mem, 0xFF, need.value)
        handle = ctypes.c_void_p()
        LIB.call("msde_trainer_init", mem, need.value, model.handle, 6, 0, ctypes.byref(handle))
        batch, keep = morphosde.make_batch(**self.batch())
        loss = morphosde.StepLoss()
        for epoch in range(3):
            LIB.call("msde_trainer_step", handle, epoch, ctypes.byref(batch), ctypes.byref(loss))
        self.assertEqual((loss.total, loss.steps), (case["totals"][2], 3))
        trained = ctypes.c_void_p()
        LIB.call("msde_trainer_model", handle, ctypes.byref(trained))
        self.assertEqual(morphosde.Model(LIB, trained, owned=False, keep=mem).params(), case["params"])
        del keep

    def test_bad_batches_leave_the_trainer_unchanged(self):
        model = LIB.model_new(small_model_config())
        trainer = model.trainer(n_max=6)
        before = trainer.model().params()
        good = self.batch()
        table = [
            (dict(x=good["x"][:-1]), 2, "x"),
            (dict(t=good["t"] * 2, x=good["x"] * 2, h=good["h"] * 2, v_hat=good["v_hat"] * 2,
                  mass=good["mass"] * 2, y=good["y"] * 2), 2, "n_max"),
            (dict(h=[0.1] * 5 + [NAN]), 3, "h"),
            (dict(h=[0.1] * 5 + [0.0]), 2, "h"),
            (dict(mass=[1.0] * 5 + [-1.0]), 2, "mass"),
            (dict(v_hat=[math.inf] + good["v_hat"][1:]), 3, "v_hat"),
            (dict(y=good["y"][:-2]), 2, "y"),
            (dict(t=[], x=[], h=[], v_hat=[], mass=[], y=[]), 2, "batch"),
            (dict(v_hat=[1e30] * 12), 9, "batch"),
        ]
        for over, status, word in table:
            arrays = dict(good)
            arrays.update(over)
            batch, keep = morphosde.make_batch(**arrays)
            loss = morphosde.StepLoss(drift=-5.0)
            with self.subTest(over=list(over)):
                self.assert_fails(
                    "msde_trainer_step", (trainer.handle, 0, ctypes.byref(batch), ctypes.byref(loss)), status, word
                )
                self.assertEqual(loss.drift, -5.0)
                self.assertEqual(trainer.model().params(), before)
        batch, keep = morphosde.make_batch(**good)
        batch.x = None
        self.assert_fails("msde_trainer_step", (trainer.handle, 0, ctypes.byref(batch), None), 1, "x")
        self.assert_fails("msde_trainer_step", (trainer.handle, 0, None, None), 1, "batch")
        self.assert_fails("msde_trainer_step", (None, 0, ctypes.byref(morphosde.Batch()), None), 1, "trainer")
        # Still usable: a good step changes the parameters.
        loss = trainer.step(0, **good)
        self.assertEqual(loss.steps, 1)
        self.assertNotEqual(trainer.model().params(), before)
        LIB.lib.msde_trainer_free(None)


class Sample(CallCase):
    @needs_expected
    def test_rollouts_equal_rust_core(self):
        case = EXPECTED["sample"]
        model = LIB.model_new(small_model_config())
        for method, key in (
            (morphosde.SAMPLE_RK4, "rk4"),
            (morphosde.SAMPLE_EULER_MARUYAMA, "em"),
            (morphosde.SAMPLE_STRANG_RK4, "strang"),
            (morphosde.SAMPLE_WEAK2, "weak2"),
        ):
            cfg = LIB.sample_config(method, h=case["h"], seed=case["seed"], block_rows=case["block_rows"])
            out, stop, report = model.sample(cfg, case["start"], 0.0, case["times"], case["n"])
            self.assertEqual(out, case[key], key)
            self.assertTrue(all(s == math.inf for s in stop))
            self.assertEqual(report.stopped, 0)
            # Another block size and a NaN-filled workspace: the same numbers.
            cfg.block_rows = 64
            again, _, _ = model.sample(cfg, case["start"], 0.0, case["times"], case["n"], workspace_fill=NAN)
            self.assertEqual(again, case[key])

    def test_bad_input(self):
        model = LIB.model_new(small_model_config())
        drift_only = LIB.model_new(small_model_config(learn_diffusion=0))
        cfg = LIB.sample_config(morphosde.SAMPLE_EULER_MARUYAMA)
        n, k = 4, 2
        start, _ = morphosde.floats([0.0, 0.0])
        times, _ = morphosde.floats([0.1, 0.2])
        ws_len = ctypes.c_size_t()
        LIB.call("msde_sample_workspace_len", model.handle, ctypes.byref(cfg), n, k, 0, ctypes.byref(ws_len))
        ws = morphosde.floats([NAN] * ws_len.value)[0]
        out, stop = morphosde.empty(n * k * 2), morphosde.empty(n)
        base = [model.handle, ctypes.byref(cfg), start, 2, 0.0, times, k, out, n * k * 2, stop, n, ws, ws_len.value, None]

        def sample_cfg(**fields):
            return ctypes.byref(LIB.sample_config(morphosde.SAMPLE_EULER_MARUYAMA, **fields))

        unordered, _ = morphosde.floats([0.2, 0.1])
        nan_times, _ = morphosde.floats([0.1, NAN])
        table = [
            ({0: None}, 1, "model"),
            ({1: None}, 1, "config"),
            ({2: None}, 1, "start"),
            ({3: 3}, 2, "start"),
            ({8: n * k * 2 - 1}, 2, "out"),
            ({10: 0, 8: 0}, 2, "stop_times"),
            ({12: ws_len.value // 4}, 5, "workspace"),
            ({4: NAN}, 3, "t0"),
            ({5: nan_times}, 3, "times"),
            ({5: unordered}, None, "times"),
            ({1: sample_cfg(method=7)}, 4, "method"),
            ({1: sample_cfg(h=0.0)}, None, None),
            ({1: sample_cfg(block_rows=0)}, 4, "block_rows"),
            ({1: sample_cfg(trace_clip=-1.0)}, 4, "trace_clip"),
            ({0: drift_only.handle}, None, None),
        ]
        for over, status, word in table:
            args = list(base)
            for i, v in over.items():
                args[i] = v
            out[0], stop[0] = 77.0, 77.0
            with self.subTest(over=over):
                before = [out[0], stop[0]]
                with self.assertRaises(morphosde.MorphosdeError) as ctx:
                    LIB.call("msde_sample", *args)
                if status is not None:
                    self.assertEqual(ctx.exception.status, status, ctx.exception)
                else:
                    self.assertIn(ctx.exception.status, (2, 4), ctx.exception)
                if word:
                    self.assertIn(word, ctx.exception.message)
                self.assertEqual([out[0], stop[0]], before)
        # The ODE methods work on a drift-only model; the SDE methods refuse it.
        rk4 = LIB.sample_config(morphosde.SAMPLE_RK4)
        drift_only.sample(rk4, [0.0, 0.0], 0.0, [0.1, 0.2], 3)
        for method in (morphosde.SAMPLE_STRANG_RK4, morphosde.SAMPLE_WEAK2):
            with self.subTest(method=method), self.assertRaises(morphosde.MorphosdeError) as ctx:
                drift_only.sample(LIB.sample_config(method), [0.0, 0.0], 0.0, [0.1, 0.2], 3)
            self.assertEqual(ctx.exception.status, 4, ctx.exception)
            self.assertIn("dynamics", ctx.exception.message)


class Uot(CallCase):
    SMALL = dict(
        x=[0.0, 0.0, 1.0, 0.0, 0.0, 1.0], y=[0.2, 0.1, 1.1, 0.2], a=[1.0, 1.0, 1.0], b=[1.5, 1.5], d=2,
    )

    def test_defaults(self):
        cfg = LIB.uot_config(0.3)
        self.assertEqual((cfg.epsilon, cfg.rho_source, cfg.rho_target), (f32(0.3), math.inf, math.inf))
        self.assertEqual((cfg.tol, cfg.max_iter, cfg.mode, cfg.translation), (f32(1e-5), 10000, morphosde.UOT_DENSE, 1))
        self.assertEqual((cfg.eps_scaling_stages, cfg.h, cfg.self_edge_bound), (0, 1.0, 0.0))
        # Balanced: the plan's marginals are a and b.
        c = self.SMALL
        r = LIB.uot_solve(c["x"], c["y"], c["a"], c["b"], 2, cfg, plan=True)
        for got, want in zip(r["row_mass"] + r["col_mass"], c["a"] + c["b"]):
            self.assertAlmostEqual(got, want, places=4)
        self.assertAlmostEqual(sum(r["plan"]), 3.0, places=4)

    @needs_expected
    def test_equals_rust_core(self):
        for case in EXPECTED["uot"]:
            cfg = LIB.uot_config(
                case["epsilon"], rho_source=case["rho_source"], rho_target=case["rho_target"], h=case["h"],
                tol=case["tol"], self_edge_bound=case["self_edge_bound"],
                mode=morphosde.UOT_ONLINE if case["online"] else morphosde.UOT_DENSE,
            )
            for fill in (0.0, NAN):
                r = LIB.uot_solve(
                    case["x"], case["y"], case["a"], case["b"], case["d"], cfg, pairs=case["pairs"],
                    bounds=case["bounds"], plan=True, workspace_fill=fill,
                )
                with self.subTest(online=case["online"], fill=fill):
                    for key in ("row_mass", "col_mass", "velocity", "plan"):
                        self.assertEqual(r[key], case[key], key)
                    s = r["summary"]
                    self.assertEqual(
                        (s.objective, s.dual, s.marginal_error, s.total_mass, s.iterations),
                        (case["objective"], case["dual"], case["marginal_error"], case["total_mass"],
                         case["iterations"]),
                    )
                    # The bound holds on the tracked pairs.
                    m = len(case["b"])
                    pairs = case["pairs"]
                    for p in range(len(pairs) // 2):
                        i, j = pairs[2 * p], pairs[2 * p + 1]
                        bound = (case["bounds"][p] if case["bounds"]
                                 else case["self_edge_bound"] * min(case["a"][i], case["b"][j]))
                        self.assertGreaterEqual(r["plan"][i * m + j], f32(bound) * (1 - 1e-6))

    def test_median_sq_distance(self):
        # Squared distances 1, 4, 9 (odd count) and 1, 4 (even: the mean).
        self.assertEqual(LIB.median_sq_distance([0.0], [1.0, 2.0, 3.0], 1), 4.0)
        self.assertEqual(LIB.median_sq_distance([0.0], [1.0, 2.0], 1), 2.5)
        if EXPECTED:
            for case in EXPECTED["uot"]:
                self.assertEqual(LIB.median_sq_distance(case["x"], case["y"], case["d"]), case["median"])
        x, _ = morphosde.floats([0.0, 1.0, 2.0, 3.0])
        nan, _ = morphosde.floats([0.0, NAN])
        ws = morphosde.empty(4)
        out = ctypes.c_float(-1.0)
        for args, status, word in [
            ((None, 4, x, 4, 2, ws, 4), 1, "x"),
            ((x, 4, x, 3, 2, ws, 4), 2, "y"),
            ((x, 4, x, 4, 0, ws, 4), 2, "d"),
            ((x, 0, x, 4, 2, ws, 4), 2, "n"),
            ((nan, 2, x, 4, 2, ws, 4), 3, "x"),
            ((x, 4, x, 4, 2, ws, 3), 5, None),
        ]:
            self.assert_fails("msde_median_sq_distance", args + (ctypes.byref(out),), status, word)
        self.assert_fails("msde_median_sq_distance", (x, 4, x, 4, 2, ws, 4, None), 1, "out")
        self.assert_fails("msde_median_sq_distance_workspace_len", (2, 2, None), 1, "out_len")
        self.assertEqual(out.value, -1.0)

    def test_bad_input(self):
        c = self.SMALL
        n, m, d = 3, 2, 2
        cfg = LIB.uot_config(0.5, rho_source=1.0, rho_target=1.0)
        x, _ = morphosde.floats(c["x"])
        y, _ = morphosde.floats(c["y"])
        a, _ = morphosde.floats(c["a"])
        b, _ = morphosde.floats(c["b"])
        pairs, _ = morphosde.u32s([0, 0, 1, 1])
        ws_len = ctypes.c_size_t()
        LIB.call("msde_uot_workspace_len", n, m, d, ctypes.byref(cfg), 1, ctypes.byref(ws_len))
        ws = morphosde.empty(ws_len.value)
        rows, cols, vel, plan = morphosde.empty(n), morphosde.empty(m), morphosde.empty(n * d), morphosde.empty(n * m)
        summary = morphosde.UotSummary()
        base = dict(
            x=x, x_len=n * d, y=y, y_len=m * d, a=a, a_len=n, b=b, b_len=m, d=d, pairs=None, pairs_len=0,
            bounds=None, bounds_len=0, cfg=ctypes.byref(cfg), rows=rows, rows_len=n, cols=cols, cols_len=m,
            vel=vel, vel_len=n * d, plan=plan, plan_len=n * m, ws=ws, ws_len=ws_len.value,
        )
        order = list(base)

        def cfg_with(**fields):
            base = dict(rho_source=1.0, rho_target=1.0)
            base.update(fields)
            return ctypes.byref(LIB.uot_config(base.pop("epsilon", 0.5), **base))

        def nan_at(values, i):
            v = list(values)
            v[i] = NAN
            return morphosde.floats(v)[0]

        small_ws = ctypes.c_size_t()
        LIB.call("msde_uot_workspace_len", n, m, d, ctypes.byref(cfg), 0, ctypes.byref(small_ws))
        self.assertEqual(small_ws.value, ws_len.value - n * m)
        table = [
            (dict(x=None), 1, "x"),
            (dict(b=None), 1, "b"),
            (dict(cfg=None), 1, "config"),
            (dict(rows=None), 1, "row_mass"),
            (dict(vel=None), 1, "velocity"),
            (dict(d=0), 2, "d"),
            (dict(a_len=0, x_len=0), 2, "n"),
            (dict(b_len=0, y_len=0), 2, "m"),
            (dict(x_len=n * d - 1), 2, "x"),
            (dict(y_len=m * d + 1), 2, "y"),
            (dict(rows_len=n - 1), 2, "row_mass"),
            (dict(vel_len=n * d - 1), 2, "velocity"),
            (dict(plan_len=n * m - 1), 2, "plan"),
            (dict(cols_len=m + 1), 2, "col_mass"),
            (dict(a_len=1 << 62, x_len=1 << 62), 13, None),
            (dict(x=nan_at(c["x"], 3)), 3, "x"),
            (dict(b=nan_at(c["b"], 1)), 3, "b"),
            (dict(a=morphosde.floats([1.0, -1.0, 1.0])[0]), 4, "a"),
            (dict(a=morphosde.floats([0.0, 0.0, 0.0])[0]), 4, "a"),
            (dict(cfg=cfg_with(epsilon=0.0)), 4, "epsilon"),
            (dict(cfg=cfg_with(epsilon=NAN)), 4, "epsilon"),
            (dict(cfg=cfg_with(rho_source=-1.0)), 4, "rho_source"),
            (dict(cfg=cfg_with(tol=0.0)), 4, "tol"),
            (dict(cfg=cfg_with(h=0.0)), 4, "h"),
            (dict(cfg=cfg_with(max_iter=0)), 4, "max_iter"),
            (dict(cfg=cfg_with(mode=2)), 4, "mode"),
            (dict(cfg=cfg_with(translation=2)), 4, "translation"),
            (dict(cfg=cfg_with(eps_scaling_stages=31)), 4, "eps_scaling_stages"),
            (dict(cfg=cfg_with(rho_source=math.inf, rho_target=math.inf), b=morphosde.floats([1.0, 1.5])[0]), 4, "b"),
            (dict(cfg=cfg_with(self_edge_bound=1.5), pairs=pairs, pairs_len=4), 4, "self_edge_bound"),
            (dict(pairs=morphosde.u32s([0, 0, 1, 0])[0], pairs_len=4), 4, "pairs"),
            (dict(pairs=morphosde.u32s([0, 5])[0], pairs_len=2), 4, "pairs"),
            (dict(pairs=pairs, pairs_len=3), 2, "pairs"),
            (dict(pairs=pairs, pairs_len=4, bounds=morphosde.floats([0.1, 5.0])[0], bounds_len=2), 4, "bounds"),
            (dict(pairs=pairs, pairs_len=4, bounds=morphosde.floats([0.1])[0], bounds_len=1), 2, "bounds"),
            (dict(bounds=morphosde.floats([0.1])[0], bounds_len=1), 2, "bounds"),
            (dict(ws_len=ws_len.value - 1), 5, "workspace"),
            (dict(ws_len=small_ws.value), 5, "workspace"),
            (dict(cfg=cfg_with(max_iter=1, tol=1e-7)), 8, "max_iter"),
        ]
        sentinels = [(rows, 0), (cols, 0), (vel, 0), (plan, 0)]
        for over, status, word in table:
            args = dict(base)
            args.update(over)
            for arr, i in sentinels:
                arr[i] = 77.0
            summary.iterations = 4242
            with self.subTest(over=list(over)):
                self.assert_fails(
                    "msde_uot_solve", [args[k] for k in order] + [ctypes.byref(summary)], status, word,
                    sentinels=sentinels,
                )
                self.assertEqual(summary.iterations, 4242)
        # Size query: NULL, bad config, zero dims.
        out = ctypes.c_size_t(5)
        self.assert_fails("msde_uot_workspace_len", (n, m, d, ctypes.byref(cfg), 0, None), 1, "out_len")
        self.assert_fails("msde_uot_workspace_len", (n, m, d, None, 0, ctypes.byref(out)), 1, "config")
        self.assert_fails("msde_uot_workspace_len", (n, m, d, cfg_with(mode=9), 0, ctypes.byref(out)), 4, "mode")
        self.assert_fails("msde_uot_workspace_len", (n, m, d, ctypes.byref(cfg), 2, ctypes.byref(out)), 4, "with_plan")
        self.assert_fails("msde_uot_workspace_len", (0, m, d, ctypes.byref(cfg), 0, ctypes.byref(out)), 2, "n")
        self.assert_fails("msde_uot_workspace_len", (1 << 40, 1 << 40, d, ctypes.byref(cfg), 1, ctypes.byref(out)), 13, None)
        self.assertEqual(out.value, 5)
        self.assert_fails("msde_uot_config_default", (0.1, None), 1, "out")
        # Without the optional outputs, and still usable after all of that.
        args = dict(base, cols=None, cols_len=0, vel=None, vel_len=0, plan=None, plan_len=0)
        LIB.call("msde_uot_solve", *([args[k] for k in order] + [None]))
        self.assertGreater(rows[0], 0.0)


def fit_config(case, **extra):
    """The fit configuration of ffi/tests/python_client.rs's fit case."""
    cfg = LIB.fit_config(
        epochs=case["epochs"], steps_per_epoch=case["steps_per_epoch"], batch=case["batch"],
        min_points=case["min_points"], validation_fraction=case["validation_fraction"],
        validation_batches=case["validation_batches"], patience=case["patience"], seed=case["seed"],
    )
    cfg.cluster.k = case["clusters"]
    for name, value in extra.items():
        setattr(cfg, name, value)
    return cfg


def toy_snapshots():
    """Three time bins of 30 points drifting right, ten embryos tracked."""
    import random

    rng = random.Random(5)
    z, t, track = [], [], []
    for b in range(3):
        for i in range(30):
            z += [0.5 * b + rng.gauss(0.0, 0.3), rng.gauss(0.0, 0.3)]
            t.append(0.2 * b)
            track.append(i if i < 10 else morphosde.UNTRACKED)
    return z, t, track


class Fit(CallCase):
    SMALL = dict(
        epochs=2, steps_per_epoch=2, batch=16, min_points=4, validation_fraction=0.2, validation_batches=1,
        patience=1, seed=1, clusters=2,
    )

    @needs_expected
    def test_defaults_are_the_rust_cores(self):
        cfg = LIB.fit_config()
        for name, value in EXPECTED["defaults"]["fit"].items():
            self.assertEqual(getattr(cfg, name), value, name)
        for name, value in EXPECTED["defaults"]["cluster"].items():
            self.assertEqual(getattr(cfg.cluster, name), value, "cluster." + name)

    @needs_expected
    def test_equals_rust_core(self):
        for case in EXPECTED["fit"]:
            with self.subTest(tracked=bool(case["track"])):
                trainer = LIB.model_new(small_model_config()).trainer(n_max=1)
                losses, report = trainer.fit(fit_config(case), case["z"], case["t"], case["track"], workspace_fill=NAN)
                self.assertEqual(trainer.model().params(), case["params"])
                flat = [x for epoch in losses for x in epoch]
                want = [NAN if x is None else x for x in case["epoch_losses"]]
                self.assertEqual(repr(flat), repr(want))
                self.assertEqual(
                    (report.epochs, report.best_epoch, report.stopped_early, report.train_rows,
                     report.validation_rows, report.steps),
                    (case["report_epochs"], case["best_epoch"], case["stopped_early"], case["train_rows"],
                     case["validation_rows"], case["steps"]),
                )
                self.assertEqual(report.best_validation, losses[report.best_epoch][3])
                self.assertEqual(report.clusters, case["clusters"])
                # A progress callback sees the same epochs, and stopping it
                # after epoch 1 gives the same first two epochs.
                seen = []
                again = LIB.model_new(small_model_config()).trainer(n_max=1)
                early, stopped = again.fit(
                    fit_config(case), case["z"], case["t"], case["track"],
                    progress=lambda e: seen.append(
                        [e.train_total, e.train_drift, e.train_diffusion, e.validation_total]) or e.epoch == 1,
                )
                self.assertEqual(repr(seen), repr(losses[:2]))
                self.assertEqual(repr(early[:2]), repr(losses[:2]))
                self.assertTrue(all(math.isnan(x) for epoch in early[2:] for x in epoch))
                self.assertEqual((stopped.epochs, stopped.stopped_early), (2, 1))
                # The trained model samples.
                out, stop, _ = trainer.model().sample(
                    LIB.sample_config(morphosde.SAMPLE_EULER_MARUYAMA, seed=1), [0.0, 0.0], 0.0, [0.2, 0.4], 8
                )
                self.assertTrue(all(math.isfinite(v) for v in out))

    def test_bad_input_leaves_the_trainer_unchanged(self):
        z, t, track = toy_snapshots()
        model = LIB.model_new(small_model_config())
        trainer = model.trainer(n_max=1)
        handle = LIB._handle("msde_trainer_model", trainer.handle)
        cfg = fit_config(self.SMALL)
        n = len(t)
        fl, il = ctypes.c_size_t(), ctypes.c_size_t()
        LIB.call("msde_fit_workspace_len", handle, n, ctypes.byref(cfg), ctypes.byref(fl), ctypes.byref(il))
        zz, _ = morphosde.floats(z)
        tt, _ = morphosde.floats(t)
        tr, _ = morphosde.u32s(track)
        fw, iw = morphosde.empty(fl.value), morphosde.empty_u32(il.value)
        losses = morphosde.empty(cfg.epochs * 4)
        report = morphosde.FitReport()
        base = dict(
            trainer=trainer.handle, cfg=ctypes.byref(cfg), z=zz, z_len=2 * n, t=tt, t_len=n, track=tr, track_len=n,
            fw=fw, fw_len=fl.value, iw=iw, iw_len=il.value, losses=losses, losses_len=len(losses),
        )
        order = list(base)

        def cfg_with(**fields):
            c = fit_config(self.SMALL)
            for name, value in fields.items():
                if name.startswith("cluster_"):
                    setattr(c.cluster, name[len("cluster_"):], value)
                else:
                    setattr(c, name, value)
            return ctypes.byref(c)

        def replace(values, i, v, make=morphosde.floats):
            values = list(values)
            values[i] = v
            return make(values)[0]

        one_bin, _ = morphosde.floats([0.0] * n)
        few = 2
        few_t, _ = morphosde.floats([0.0, 0.2])
        before = trainer.model().params()
        table = [
            (dict(trainer=None), 1, "trainer"),
            (dict(cfg=None), 1, "config"),
            (dict(z=None), 1, "z"),
            (dict(t=None), 1, "t"),
            (dict(fw=None), 1, "float_workspace"),
            (dict(z_len=2 * n - 1), 2, "z"),
            (dict(t_len=0, z_len=0), 2, "t"),
            (dict(track_len=n - 1), 2, "track"),
            (dict(losses_len=len(losses) - 1), 2, "epoch_losses"),
            (dict(z=replace(z, 7, NAN)), 3, "z"),
            (dict(t=replace(t, 3, math.inf)), 3, "t"),
            (dict(t=one_bin), 2, "single time bin"),
            # Fewer observations than clusters.
            (dict(t=few_t, t_len=few, z_len=2 * few, track_len=0, cfg=cfg_with(cluster_k=3)), None, "k"),
            (dict(cfg=cfg_with(epochs=0)), 4, "epochs"),
            (dict(cfg=cfg_with(batch=1)), 4, "batch"),
            (dict(cfg=cfg_with(epsilon_relative=NAN)), 4, "epsilon_relative"),
            (dict(cfg=cfg_with(rho_relative=0.0)), 4, "rho_relative"),
            (dict(cfg=cfg_with(track_bound=1.5)), 4, "track_bound"),
            (dict(cfg=cfg_with(validation_fraction=0.95)), 4, "validation_fraction"),
            (dict(cfg=cfg_with(validation_batches=0)), 4, "validation_batches"),
            (dict(cfg=cfg_with(validation_tolerance=-0.1)), 4, "validation_tolerance"),
            (dict(cfg=cfg_with(final_learning_rate=0.0)), 4, "final_learning_rate"),
            (dict(cfg=cfg_with(bridge_epsilon=2)), 4, "bridge_epsilon"),
            (dict(cfg=cfg_with(validation_min_per_bin=65)), 4, "validation_min_per_bin"),
            (dict(cfg=cfg_with(divergence_factor=1.0)), 4, "divergence_factor"),
            (dict(cfg=cfg_with(divergence_factor=math.inf)), 4, "divergence_factor"),
            (dict(cfg=cfg_with(max_rollbacks=65)), 4, "max_rollbacks"),
            (dict(cfg=cfg_with(cluster_k=0)), 4, "k"),
            (dict(cfg=cfg_with(cluster_sigma_z_mode=9)), 4, "sigma_z_mode"),
            (dict(fw_len=fl.value - 1), 5, "float_workspace"),
            (dict(iw_len=il.value - 1), 5, "index_workspace"),
        ]
        for over, status, word in table:
            args = dict(base)
            args.update(over)
            losses[0] = 77.0
            report.epochs = 999
            with self.subTest(over=list(over)):
                with self.assertRaises(morphosde.MorphosdeError) as ctx:
                    LIB.call("msde_trainer_fit", *([args[k] for k in order] + [morphosde.FIT_PROGRESS(), None, ctypes.byref(report)]))
                if status is not None:
                    self.assertEqual(ctx.exception.status, status, ctx.exception)
                else:
                    self.assertIn(ctx.exception.status, (2, 4), ctx.exception)
                if word:
                    self.assertIn(word, ctx.exception.message)
                self.assertEqual((losses[0], report.epochs), (77.0, 999))
                self.assertEqual(trainer.model().params(), before)
        # The size query: NULL and bad arguments.
        out = ctypes.c_size_t(3)
        self.assert_fails("msde_fit_workspace_len", (None, n, ctypes.byref(cfg), ctypes.byref(out), ctypes.byref(out)), 1, "model")
        self.assert_fails("msde_fit_workspace_len", (handle, n, None, ctypes.byref(out), ctypes.byref(out)), 1, "config")
        self.assert_fails("msde_fit_workspace_len", (handle, n, cfg_with(epochs=0), ctypes.byref(out), ctypes.byref(out)), 4, "epochs")
        self.assert_fails("msde_fit_workspace_len", (handle, n, ctypes.byref(cfg), None, ctypes.byref(out)), 1, "float_len")
        self.assertEqual(out.value, 3)
        self.assert_fails("msde_fit_config_default", (None,), 1, "out")
        # Still usable: a good call trains, continuing the step count.
        trainer.step(0, x=[0.0, 0.0], t=[0.0], h=[0.1], v_hat=[0.1, 0.0], mass=[1.0], y=[0.01, 0.0])
        _, r = trainer.fit(cfg, z, t, track)
        self.assertEqual(r.steps, 1 + cfg.epochs * cfg.steps_per_epoch - r.skipped_steps)
        self.assertNotEqual(trainer.model().params(), before)

    def test_a_fit_that_diverges_is_refused_and_leaves_the_trainer_unchanged(self):
        z, t, track = toy_snapshots()
        model = LIB.model_new(small_model_config(learning_rate=10.0))
        trainer = model.trainer(n_max=1)
        before = trainer.model().params()
        defaults = LIB.fit_config()
        self.assertEqual((defaults.validation_min_per_bin, defaults.max_rollbacks), (8, 4))
        self.assertEqual(defaults.divergence_factor, 100.0)
        epochs = []

        def progress(epoch):
            epochs.append((epoch.rollbacks, epoch.learning_rate_factor))
            return False

        with self.assertRaises(morphosde.MorphosdeError) as ctx:
            trainer.fit(fit_config(self.SMALL, epochs=30, patience=30), z, t, track, progress=progress)
        self.assertEqual(ctx.exception.status, 12, ctx.exception)
        self.assertIn("diverged", LIB.status_str(12))
        self.assertEqual(trainer.model().params(), before)
        # Each epoch reports the rate factor of the roll-backs so far; the
        # fifth roll-back ends the call before its epoch is reported.
        seen = 0
        for rollbacks, factor in epochs:
            seen += rollbacks
            self.assertEqual(factor, 0.5**seen)
        self.assertLessEqual(seen, 4)

class Match(CallCase):
    @needs_expected
    def test_defaults_are_the_rust_cores(self):
        cfg = LIB.match_config()
        for name, value in EXPECTED["defaults"]["match"].items():
            self.assertEqual(getattr(cfg, name), value, name)

    def test_matching_moves_the_model_and_failures_leave_it_alone(self):
        z, t, _ = toy_snapshots()
        model = LIB.model_new(small_model_config())
        before = model.params()
        cfg = LIB.match_config(steps=10, batch=8, substeps=2, check_every=2, learning_rate=1e-2)
        with self.assertRaises(morphosde.MorphosdeError) as ctx:
            model.match(cfg, z, [0.0] * len(t))
        self.assertEqual(ctx.exception.status, 2, ctx.exception)
        self.assertEqual(model.params(), before)
        with self.assertRaises(morphosde.MorphosdeError) as ctx:
            model.match(LIB.match_config(batch=1), z, t)
        self.assertEqual(ctx.exception.status, 4, ctx.exception)
        self.assertIn("batch", ctx.exception.message)
        report = model.match(cfg, z, t)
        self.assertEqual(report.steps, 10)
        self.assertLessEqual(report.held_out_kept, report.held_out_initial)
        self.assertEqual(model.params() != before, report.kept_step > 0)


class DiffusionSpectrum(CallCase):
    @needs_expected
    def test_equals_rust_core(self):
        case = EXPECTED["model"]
        model = LIB.model_new(small_model_config())
        for fill in (0.0, NAN):
            w, v, dm = model.diffusion_spectrum(case["z"], case["t"], workspace_fill=fill)
            self.assertEqual((w, v, dm), (case["w"], case["v"], case["dm"]))

    def test_reconstructs_d_from_the_factor(self):
        model = LIB.model_new(small_model_config())
        z, t = [0.3, -0.2, 1.0, 0.5], [0.1, 0.7]
        _, l = model.drift_factor(z, t)
        w, v, dm = model.diffusion_spectrum(z, t)
        d = q = 2
        for r in range(2):
            for i in range(d):
                for j in range(d):
                    llt = sum(l[r * d * q + i * q + k] * l[r * d * q + j * q + k] for k in range(q))
                    self.assertAlmostEqual(dm[r * 4 + i * d + j], llt, places=6)
                    rebuilt = sum(w[r * d + k] * v[r * 4 + i * d + k] * v[r * 4 + j * d + k] for k in range(d))
                    self.assertAlmostEqual(rebuilt, llt, places=5)
            self.assertGreaterEqual(w[r * d], w[r * d + 1])
            self.assertGreater(w[r * d + 1], 0.0)

    def test_bad_input(self):
        model = LIB.model_new(small_model_config())
        drift_only = LIB.model_new(small_model_config(learn_diffusion=0))
        rows = 2
        z, _ = morphosde.floats([0.1, 0.2, 0.3, 0.4])
        t, _ = morphosde.floats([0.0, 0.5])
        nan_z, _ = morphosde.floats([0.1, NAN, 0.3, 0.4])
        ws_len = ctypes.c_size_t()
        LIB.call("msde_model_diffusion_spectrum_workspace_len", model.handle, rows, ctypes.byref(ws_len))
        ws = morphosde.empty(ws_len.value)
        w, v, dm = morphosde.empty(4), morphosde.empty(8), morphosde.empty(8)
        base = [model.handle, z, 4, t, 2, rows, w, 4, v, 8, dm, 8, ws, ws_len.value]
        table = [
            ({0: None}, 1, "model"),
            ({1: None}, 1, "z"),
            ({6: None}, 1, "w"),
            ({2: 3}, 2, "z"),
            ({4: 3}, 2, "t"),
            ({7: 3}, 2, "w"),
            ({9: 7}, 2, "v"),
            ({11: 9}, 2, "dm"),
            ({5: 0, 2: 0, 4: 0, 7: 0, 9: 0, 11: 0}, 2, "rows"),
            ({1: nan_z}, 3, "z"),
            ({13: ws_len.value - 1}, 5, "workspace"),
            ({0: drift_only.handle}, 4, "model"),
        ]
        for over, status, word in table:
            args = list(base)
            for i, val in over.items():
                args[i] = val
            w[0] = v[0] = dm[0] = 55.0
            with self.subTest(over=over):
                self.assert_fails(
                    "msde_model_diffusion_spectrum", args, status, word, sentinels=[(w, 0), (v, 0), (dm, 0)]
                )
        out = ctypes.c_size_t(9)
        self.assert_fails("msde_model_diffusion_spectrum_workspace_len", (drift_only.handle, 2, ctypes.byref(out)), 4, "model")
        self.assert_fails("msde_model_diffusion_spectrum_workspace_len", (model.handle, 2, None), 1, "out_len")
        self.assert_fails("msde_model_diffusion_spectrum_workspace_len", (model.handle, 1 << 62, ctypes.byref(out)), 13, "rows")
        self.assertEqual(out.value, 9)
        # Eigenvalues only (v and dm skipped).
        args = list(base)
        args[8:12] = [None, 0, None, 0]
        LIB.call("msde_model_diffusion_spectrum", *args)
        self.assertNotEqual(w[0], 55.0)


class PropagatedDiffusion(CallCase):
    @needs_expected
    def test_equals_rust_core(self):
        c = EXPECTED["propagated"]
        model = LIB.model_new(small_model_config())
        for fill in (0.0, NAN):
            est, flow = model.propagated_diffusion(c["z"], c["t"], c["h"], c["substeps"], moments=c["moments"],
                                                   workspace_fill=fill)
            self.assertEqual((est, flow), (c["from_moments"], c["flow"]))
            est, _ = model.propagated_diffusion(c["z"], c["t"], c["h"], c["substeps"], y=c["y"], workspace_fill=fill)
            self.assertEqual(est, c["from_pairs"])

    def test_small_gaps_give_the_moments_back(self):
        # M_h(D) = h D + O(h^2): at h = 1e-4 the estimate is the moment itself.
        model = LIB.model_new(small_model_config())
        moments = [0.5, 0.1, 0.1, 0.3]
        est, _ = model.propagated_diffusion([0.2, -0.1], [0.0], [1e-4], 2, moments=moments)
        for got, want in zip(est, moments):
            self.assertAlmostEqual(got, want, delta=1e-3)
        # Symmetric PSD output even for an indefinite moment (eigenvalues clipped).
        est, _ = model.propagated_diffusion([0.2, -0.1], [0.0], [0.1], 4, moments=[1.0, 0.0, 0.0, -1.0])
        self.assertEqual(est[1], est[2])
        self.assertGreaterEqual(est[0] * est[3] - est[1] * est[2], -1e-6)
        self.assertGreaterEqual(est[0] + est[3], 0.0)

    def test_bad_input(self):
        model = LIB.model_new(small_model_config())
        rows, d = 2, 2
        z, _ = morphosde.floats([0.1, 0.2, 0.3, 0.4])
        t, _ = morphosde.floats([0.0, 0.5])
        h, _ = morphosde.floats([0.2, 0.2])
        mom, _ = morphosde.floats([0.5, 0.1, 0.1, 0.3] * 2)
        y, _ = morphosde.floats([0.2, 0.2, 0.4, 0.3])
        ws_len = ctypes.c_size_t()
        LIB.call("msde_model_propagated_diffusion_workspace_len", model.handle, rows, 4, ctypes.byref(ws_len))
        ws = morphosde.empty(ws_len.value)
        out, flow = morphosde.empty(8), morphosde.empty(4)
        base = [model.handle, z, 4, t, 2, h, 2, 4, mom, 8, None, 0, out, 8, flow, 4, ws, ws_len.value]

        def with_value(values, i, v):
            values = list(values)
            values[i] = v
            return morphosde.floats(values)[0]

        table = [
            ({0: None}, 1, "model"),
            ({1: None}, 1, "z"),
            ({12: None}, 1, "d_out"),
            ({2: 3}, 2, "z"),
            ({6: 1}, 2, "h"),
            ({4: 0, 2: 0, 6: 0}, 2, "t"),
            ({9: 7}, 2, "moments"),
            ({10: y, 11: 4}, 2, "moments"),
            ({8: None, 9: 0}, 2, "moments"),
            ({8: None, 9: 0, 10: y, 11: 3}, 2, "y"),
            ({13: 7}, 2, "d_out"),
            ({15: 3}, 2, "flow"),
            ({1: with_value([0.1, 0.2, 0.3, 0.4], 2, NAN)}, 3, "z"),
            ({8: with_value([0.5, 0.1, 0.1, 0.3] * 2, 5, math.inf)}, 3, "moments"),
            ({5: with_value([0.2, 0.2], 1, 0.0)}, None, "h"),
            ({5: with_value([0.2, 0.2], 1, NAN)}, None, "h"),
            ({7: 0}, 4, "substeps"),
            ({7: 1025}, 4, "substeps"),
            ({17: ws_len.value - 1}, 5, "workspace"),
            ({1: morphosde.floats([1e30, 1e30, 0.3, 0.4])[0], 5: morphosde.floats([1e6, 0.2])[0]}, 9, None),
        ]
        for over, status, word in table:
            args = list(base)
            for i, v in over.items():
                args[i] = v
            out[0], flow[0] = 55.0, 55.0
            with self.subTest(over=list(over)):
                with self.assertRaises(morphosde.MorphosdeError) as ctx:
                    LIB.call("msde_model_propagated_diffusion", *args)
                if status is not None:
                    self.assertEqual(ctx.exception.status, status, ctx.exception)
                else:
                    self.assertIn(ctx.exception.status, (3, 4), ctx.exception)
                if word:
                    self.assertIn(word, ctx.exception.message)
                self.assertEqual((out[0], flow[0]), (55.0, 55.0))
        out_len = ctypes.c_size_t(9)
        for args, status, word in [
            ((None, 2, 4, ctypes.byref(out_len)), 1, "model"),
            ((model.handle, 2, 0, ctypes.byref(out_len)), 4, "substeps"),
            ((model.handle, 2, 4, None), 1, "out_len"),
            ((model.handle, 1 << 60, 4, ctypes.byref(out_len)), 13, None),
        ]:
            self.assert_fails("msde_model_propagated_diffusion_workspace_len", args, status, word)
        self.assertEqual(out_len.value, 9)
        # Without the flow output; the model still works.
        args = list(base)
        args[14:16] = [None, 0]
        LIB.call("msde_model_propagated_diffusion", *args)
        self.assertNotEqual(out[0], 55.0)


class Metrics(CallCase):
    @needs_expected
    def test_equal_rust_core(self):
        c = EXPECTED["metrics"]
        self.assertEqual(LIB.energy_distance(c["x"], c["y"], c["d"]), c["energy"])
        self.assertEqual(LIB.sliced_wasserstein(c["x"], c["y"], c["d"], c["projections"], c["seed"]), c["sliced"])

    def test_closed_forms(self):
        # Two single points 3 apart: E = 2*3 - 0 - 0; SW = 3 * sqrt(mean cos^2) in 1-D = 3.
        self.assertAlmostEqual(LIB.energy_distance([0.0], [3.0], 1), 6.0, places=5)
        self.assertAlmostEqual(LIB.sliced_wasserstein([0.0], [3.0], 1, 5, 0), 3.0, places=5)

    def test_bad_input(self):
        x, _ = morphosde.floats([0.0, 1.0, 2.0, 3.0])
        nan, _ = morphosde.floats([0.0, NAN])
        out = ctypes.c_float(-1.0)
        for args, status, word in [
            ((None, 4, x, 4, 2), 1, "x"),
            ((x, 4, x, 3, 2), 2, "y"),
            ((x, 4, x, 4, 0), 2, "d"),
            ((x, 0, x, 4, 2), 2, "x"),
            ((nan, 2, x, 4, 2), 3, "x"),
        ]:
            self.assert_fails("msde_energy_distance", args + (ctypes.byref(out),), status, word)
        self.assert_fails("msde_energy_distance", (x, 4, x, 4, 2, None), 1, "out")
        ws = morphosde.empty(16)
        self.assert_fails("msde_sliced_wasserstein", (x, 4, x, 4, 2, 0, 0, ws, 16, ctypes.byref(out)), 4, "projections")
        self.assert_fails("msde_sliced_wasserstein", (x, 4, x, 4, 2, 5, 0, ws, 13, ctypes.byref(out)), 5, "workspace")
        self.assertEqual(out.value, -1.0)


class TrainAndSampleScript(unittest.TestCase):
    def test_script_trains_and_samples(self):
        import subprocess

        script = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python", "train_and_sample.py")
        env = dict(os.environ, MORPHOSDE_LIB=LIB.path)
        run = subprocess.run([sys.executable, script], capture_output=True, text=True, env=env, timeout=300)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        self.assertIn("2 clusters", run.stdout)
        self.assertIn("sampled 64 trajectories, 0 stopped", run.stdout)
        eigen = [line for line in run.stdout.splitlines() if line.startswith("diffusion eigenvalues")]
        self.assertEqual(len(eigen), 1, run.stdout)


if __name__ == "__main__":
    unittest.main()
