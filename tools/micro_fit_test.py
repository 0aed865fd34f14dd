"""micro_fit run as a user runs it: each row is the micro build's measurement
(checked against the bundled micro artifact, whose arena micro_test proves
in TFLM), the budget marks what fits and the largest fitting model, bad input
is one line."""

import json
import os

from absl.testing import absltest

from mobilenet.core import arch
from mobilenet.testing import tools

HERE = os.path.dirname(os.path.abspath(__file__))
ARTIFACT = os.path.join(HERE, "..", "mobilenet", "tflite",
                        "mobilenet_v2_micro.json")
PATCHED = os.path.join(HERE, "..", "mobilenet", "tflite",
                       "mobilenet_v2_micro_patched.json")
KIB = 1024


def _run(*args):
  return tools.run_tool("tools/micro_fit.py", *args, cwd="/")


class MicroFitTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # The bundled model's architecture (alpha 0.35, 48x48x1, 10 classes) and
    # a smaller input, measured once; later runs re-mark them.
    cls.out = os.path.join(absltest.get_default_test_tmpdir(), "fit")
    r = _run("--ram_kib=100000", "--flash_kib=100000", "--alphas=0.35",
             "--sizes=32,48", "--channels=1", "--classes=10",
             "--num_calibration=4", f"--save_to={cls.out}")
    assert r.returncode == 0, r.stderr
    cls.stdout = r.stdout
    cls.json = os.path.join(cls.out, "micro_fit.json")
    with open(cls.json) as f:
      cls.rows = json.load(f)["rows"]

  def test_writes_table_data_and_plot(self):
    self.assertCountEqual(os.listdir(self.out), ["micro_fit.md",
                                                 "micro_fit.json",
                                                 "micro_fit.png"])
    with open(os.path.join(self.out, "micro_fit.png"), "rb") as f:
      self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
    self.assertIn("| **0.35** | **48x48** |", self.stdout)

  def test_rows_measure_what_the_micro_build_needs(self):
    with open(ARTIFACT) as f:
      bundled = json.load(f)["micro"]
    small, same = self.rows
    self.assertEqual((same["alpha"], same["size"]), (0.35, 48))
    # Same architecture as the bundled model, other weights: same memory.
    for key in ("arena_bytes", "arena_activation_bytes",
                "arena_persistent_bytes", "recommended_arena_bytes",
                "flash_bytes"):
      self.assertEqual(same[key], bundled[key], key)
    self.assertEqual(same["macs"], arch.count_macs(arch.derive(0.35, 1, 10),
                                                   48, 48))
    self.assertLess(small["arena_activation_bytes"],
                    same["arena_activation_bytes"])

  def test_budget_marks_the_largest_model_that_fits(self):
    small, large = self.rows
    between = (small["recommended_arena_bytes"] +
               large["recommended_arena_bytes"]) / 2 / KIB
    flash = large["flash_bytes"] / KIB
    cases = {  # ram_kib, flash_kib -> best size, rows marked fitting
        "both fit": (10000, flash, 48, [True, True]),
        "RAM fits the small one": (between, flash, 32, [True, False]),
        "flash too small": (10000, flash - 1, None, [False, False]),
    }
    for what, (ram, fl, best, fits) in cases.items():
      with self.subTest(what):
        out = os.path.join(self.create_tempdir().full_path, "x")
        r = _run(f"--ram_kib={ram}", f"--flash_kib={fl}",
                 f"--from_json={self.json}", f"--save_to={out}")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(out, "micro_fit.json")) as f:
          rows = json.load(f)["rows"]
        self.assertEqual([r["fits"] for r in rows], fits)
        self.assertEqual([r["size"] for r in rows if r["best"]],
                         [best] if best else [])
        self.assertIn("No configuration fits" if best is None else
                      f"Largest that fits: alpha 0.35 at {best} px", r.stdout)

  def test_bad_input_is_one_line_and_writes_nothing(self):
    d = self.create_tempdir().full_path
    cases = {
        "ram": (["--ram_kib=0", "--flash_kib=10"], "--ram_kib"),
        "size": (["--ram_kib=1", "--flash_kib=1", "--sizes=16"], "--sizes"),
        "alphas": (["--ram_kib=1", "--flash_kib=1", "--alphas=big"],
                   "--alphas"),
        "json": (["--ram_kib=1", "--flash_kib=1",
                  f"--from_json={os.path.join(d, 'none.json')}"],
                 "not a micro_fit.json"),
        "classes": (["--ram_kib=1", "--flash_kib=1", "--classes=1000",
                     f"--from_json={self.json}"], "--classes=1000 but"),
    }
    for what, (args, needle) in cases.items():
      with self.subTest(what):
        out = os.path.join(d, what, "out")
        r = _run(*args, f"--save_to={out}")
        self.assertEqual(r.returncode, 1)
        self.assertNotIn("Traceback", r.stderr)
        self.assertLen(tools.error_lines(r), 1, r.stderr)
        self.assertIn(needle, tools.error_lines(r)[0])
        self.assertFalse(os.path.exists(os.path.dirname(out)))


class PatchedFitTest(absltest.TestCase):

  def test_auto_rows_measure_what_the_patched_build_needs(self):
    out = os.path.join(self.create_tempdir().full_path, "fit")
    r = _run("--ram_kib=110", "--flash_kib=1000", "--alphas=0.35",
             "--sizes=48", "--channels=1", "--classes=10",
             "--num_calibration=4", "--patches=auto", f"--save_to={out}")
    self.assertEqual(r.returncode, 0, r.stderr)
    with open(os.path.join(out, "micro_fit.json")) as f:
      (row,) = json.load(f)["rows"]
    with open(PATCHED) as f:
      patched = json.load(f)["micro"]
    with open(ARTIFACT) as f:
      plain = json.load(f)["micro"]
    # The bundled model's shape built by convert --patches=auto (the
    # genrule): the same grid, arena and flash from other weights.
    p = patched["patches"]
    self.assertEqual(row["patches"], p["spec"])
    for key in ("arena_bytes", "recommended_arena_bytes", "flash_bytes"):
      self.assertEqual(row[key], patched[key], key)
    self.assertEqual(row["unpatched_arena_bytes"], plain["arena_bytes"])
    self.assertEqual(row["mac_overhead"], p["mac_overhead"])
    # Fits by the patched arena: 109 KiB recommended, unpatched 115.
    self.assertTrue(row["fits"])
    self.assertIn("| unpatched arena KiB | patches | MAC overhead | fits |",
                  r.stdout)


if __name__ == "__main__":
  absltest.main()
