"""The benchmark (tools/benchmark*.py) on a tiny configuration: every metric
is produced, finite and positive, and the three reports are written (no
timing assertions)."""

import json
import math
import os
import subprocess
import sys

from absl.testing import absltest
import numpy as np
from PIL import Image

from tools import benchmark
from tools import benchmark_harness
from tools import benchmark_report
from tools import benchmark_run

TINY = benchmark_harness.Config(
    "tiny", alpha=0.35, size=32, throughput_batch=2, train_batch=4,
    train_steps=1, latency_rounds=2, latency_calls=1, throughput_rounds=2,
    tflite_rounds=2, tflite_calls=1, conversion_repeats=1, train_rounds=1,
    warmup=1, num_calibration=4, records_images=24, photo_size=(45, 60))


class InterleavedTest(absltest.TestCase):

  def test_every_fn_runs_warmup_plus_rounds_times_calls(self):
    counts = {"a": 0, "b": 0, "c": 0}

    def counter(name):
      def fn():
        counts[name] += 1
      return fn

    medians, samples = benchmark_harness.interleaved(
        {k: counter(k) for k in counts}, rounds=4, calls=3, warmup=2)
    self.assertEqual(counts, {"a": 14, "b": 14, "c": 14})
    for k in counts:
      self.assertLen(samples[k], 4)
      self.assertGreaterEqual(medians[k], 0.0)


class RunTest(absltest.TestCase):
  """Parts of the run (spread over Bazel shards); each writes the reports."""

  def _check(self, only, want):
    metrics, details = benchmark_run.run(TINY, only=only, seed=1)
    keys = [m.key for m in metrics]
    for k in want:
      self.assertIn(k, keys)
    for m in metrics:
      for v in (m.ours, m.reference, m.value):
        self.assertTrue(math.isfinite(v) and v > 0, f"{m.key}: {v}")
    self._check_reports(metrics, details)
    return {m.key: m for m in metrics}, details

  def _check_reports(self, metrics, details):
    out = self.create_tempdir().full_path
    meta = {"command": "test", "date": "now", "seconds": 1.0,
            "load_before": (1.0, 1.0, 1.0), "load_after": (1.0, 1.0, 1.0),
            "env": benchmark_report.environment(), **details}
    paths = benchmark_report.write_reports(metrics, meta, out)
    self.assertCountEqual(os.listdir(out),
                          ["benchmark.md", "benchmark.json", "benchmark.png"])
    with open(paths["json"]) as f:
      doc = json.load(f)
    self.assertEqual([m["key"] for m in doc["metrics"]],
                     [m.key for m in metrics])
    self.assertEqual(doc["config"]["size"], 32)
    with open(paths["md"]) as f:
      md = f.read()
    for m in metrics:
      self.assertIn(f"| {m.key}: ", md)
    with Image.open(paths["png"]) as im:
      self.assertEqual(im.format, "PNG")
      pixels = np.asarray(im.convert("L"))
    self.assertGreater(pixels.shape[0], 100)
    self.assertGreater(pixels.std(), 1.0)  # not a blank canvas

  def test_tf_float(self):
    _, details = self._check(("P1", "P2"), ("P1", "P2"))
    # The Keras reference really holds our weights.
    self.assertLess(details["P1_max_abs_diff"], 1e-4)

  def test_training(self):
    self._check(("P6",), ("P6",))

  def test_input_pipeline(self):
    metrics, details = self._check(("P7",), ("P7",))
    ips = details["P7_images_per_second"]
    self.assertEqual(metrics["P7"].ours, ips["records_pipeline"])
    self.assertEqual(metrics["P7"].target, 3.0)

  def test_head_phase(self):
    metrics, details = self._check(("P8",), ("P8",))
    seconds = details["P8_seconds"]
    self.assertEqual(metrics["P8"].value,
                     seconds["uncached"] / seconds["cached"])
    # 64 digits (6 or 7 a class), one of each class held out (--val_split
    # 0.1 rounds up to one image per class).
    self.assertEqual(seconds["images"], 54)
    self.assertEqual(metrics["P8"].target, 10.0)

  def test_tflite(self):
    metrics, details = self._check(
        ("P3", "P4", "P5"),
        ("P4", "P5", "P3 int8 1t", "P3 int8 2t", "P3 float 1t",
         "P3 float16 2t"))
    # P4 is the size of a real flatbuffer, in 10^6 bytes.
    self.assertAlmostEqual(metrics["P4"].ours,
                           details["tflite_bytes"]["ours_int8"] / 1e6)
    self.assertIsNone(metrics["P4"].target)  # 3.7 MB is for alpha 1.0/224


class FlagsTest(absltest.TestCase):

  def _run(self, *args):
    out = self.create_tempdir().full_path
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run(
        [sys.executable, benchmark.__file__, f"--out_dir={out}", *args],
        capture_output=True, text=True, env=env, timeout=60, check=False)
    return proc, out

  def test_bad_flags_give_one_line_and_no_output(self):
    for args in (["--only=P9"], ["--bogus"]):
      proc, out = self._run(*args)
      self.assertNotEqual(proc.returncode, 0, args)
      lines = proc.stderr.strip().splitlines()
      self.assertLen(lines, 1, proc.stderr)
      self.assertStartsWith(lines[0], "error: ")
      self.assertNotIn("Traceback", proc.stderr)
      self.assertEmpty(os.listdir(out))


if __name__ == "__main__":
  absltest.main()
