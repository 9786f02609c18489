"""Tests of the ctypes client over the C ABI: every call, including the
error paths. Run by `cargo test` (ffi/tests/python_client.rs), which sets
MORPHOSDE_LIB; standard library only."""

import ctypes
import math
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python"))

import morphosde  # noqa: E402

LIB = morphosde.Library()


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


if __name__ == "__main__":
    unittest.main()
