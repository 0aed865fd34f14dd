"""fidelity_report on the bundled model and the 1,000 held-out digits: what
it reports is what independent measurements give, and the committed
data/docs/fidelity.md (quoted by the README) is current."""

import os
import re

from absl.testing import absltest

from mobilenet.core import labels as labels_lib
from mobilenet.core import model_source
from mobilenet.testing import tools


def _table(md):
  """{first cell: rest of the row} of every Markdown table row."""
  rows = {}
  for line in md.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if line.startswith("|") and len(cells) > 1:
      rows[cells[0]] = cells[1:]
  return rows


def _pct(cell):
  return float(re.match(r"([\d.]+) %", cell).group(1)) / 100


STALE = ("data/docs/fidelity.md is stale: run `tools/bazel run "
         "//tools:fidelity_report -- --save_to data/docs`")


class FidelityReportTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    out = absltest.get_default_test_tmpdir()
    proc = tools.run_tool("tools/fidelity_report.py", "--save_to", out,
                          "--debug_images", "10", timeout=900)
    assert proc.returncode == 0, proc.stderr
    with open(os.path.join(out, "fidelity.md"), encoding="utf-8") as f:
      cls.md = f.read()
    with open(labels_lib.data_path("docs/fidelity.md"),
              encoding="utf-8") as f:
      cls.committed = f.read()
    cls.rows, cls.committed_rows = _table(cls.md), _table(cls.committed)

  def test_float_accuracy_is_the_recorded_keras_checked_one(self):
    # model_source_test checks heldout_accuracy with keras.applications.
    recorded = model_source.resolve("bundled").metadata["heldout_accuracy"]
    self.assertAlmostEqual(_pct(self.rows["accuracy"][0]), recorded,
                           delta=1.5e-3)

  def test_committed_report_is_current(self):
    """Integer kernels, file hashes and the float graph give the same on any
    CPU: those lines must match the committed file exactly.  XNNPACK's int8
    and the per-layer debugger round per CPU: within a few digits."""
    lines = self.md.splitlines()
    committed = self.committed.splitlines()
    for prefix in ("# Quantization fidelity", "Weights:", "Model sha256",
                   "TFLM accuracy", "| raw outputs identical to LiteRT BUILTIN_REF",
                   "| LiteRT reference kernels",
                   "| integer-exact forward"):
      ours = [l for l in lines if l.startswith(prefix)]
      self.assertLen(ours, 1, prefix)
      self.assertEqual(ours, [l for l in committed if l.startswith(prefix)],
                       STALE)
    # Columns: float, LiteRT as run here (XNNPACK), integer-exact forward.
    # Float and integer-exact are the same on every CPU: exactly equal.
    for key, col in (("accuracy", 0), ("accuracy", 2),
                     ("top-1 agreement with float", 2)):
      self.assertEqual(self.rows[key][col], self.committed_rows[key][col],
                       f"{key} column {col}: {STALE}")
    for key in ("accuracy", "top-1 agreement with float"):
      # 998/1,000 top-1 agreement between XNNPACK and the reference kernels
      # on this CPU: 3 digits (0.3 points) for another one.
      self.assertAlmostEqual(_pct(self.rows[key][1]),
                             _pct(self.committed_rows[key][1]), delta=3e-3,
                             msg=key)
    tflm = self.rows["LiteRT reference kernels (BUILTIN_REF)"]
    self.assertEqual(tflm, ["1,000/1,000", "1,000/1,000", "0 steps"])


if __name__ == "__main__":
  absltest.main()
