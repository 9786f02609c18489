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
        self.assertEqual(LIB.lib.msde_abi_version(), 1)

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
            (4, 0, morphosde.SIGMA_Z_MEDIAN, 1.5, 0, 10),
        )
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
            (dict(n=1 << 62, z_len=1 << 62), 2, None),
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


if __name__ == "__main__":
    unittest.main()
