"""--patches=auto|RxC[@LAYER] against arenas measured in TFLM, and the convert
tool's one-line refusals of grids that do not fit."""

import os

import numpy as np
from absl.testing import absltest

from mobilenet.testing import models
from mobilenet.testing import tools
from mobilenet.tflite import micro_export
from mobilenet.tflite import micro_runtime
from mobilenet.tflite import patch_search
from mobilenet.tflite import patches

CONVERT = "mobilenet/tflite/convert.py"
SIZE = 72


class SearchTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.converted = models.live_random_int8(0.35, SIZE, 3, 10)
    cls.tflite = cls.converted.tflite
    cls.plain = micro_runtime.measure_arena(cls.tflite)

  def test_auto_takes_the_smallest_measured_arena(self):
    choice = patch_search.search(self.tflite, "auto")
    self.assertGreater(choice.searched, 10)
    # Its arena is what TFLM measures for its bytes, below the unpatched
    # model's and below other grids measured the same way.
    self.assertEqual(micro_runtime.measure_arena(choice.tflite),
                     choice.arena)
    self.assertLess(choice.arena.minimum, self.plain.minimum)
    for rows, cols, layer in ((2, 2, "block_1"), (3, 3, "block_3"),
                              (1, 2, "expanded_conv")):
      other = patches.patch(self.tflite, [(rows, cols, layer)])
      self.assertLessEqual(choice.arena.minimum,
                           micro_runtime.measure_arena(other).minimum,
                           f"{rows}x{cols}@{layer}")

  def test_grid_without_layer_searches_the_blocks_it_divides(self):
    choice = patch_search.search(self.tflite, "3x3")
    ((rows, cols, layer),) = choice.stages
    self.assertEqual((rows, cols), (3, 3))
    # 72 px: 3 divides expanded_conv's 36, block_1..2's 18, block_3..5's 9
    # and block_13..16's 3, not block_6..12's 5.
    self.assertEqual(choice.searched, 10)
    self.assertNotIn(layer, [f"block_{n}" for n in range(6, 13)])

  def test_sidecar_section(self):
    micro = micro_export.for_micro(self.converted, "3x3@block_3")
    p = micro.metadata["micro"]["patches"]
    self.assertEqual(p["unpatched"]["arena_bytes"], self.plain.minimum)
    self.assertEqual(p["unpatched"]["flash_bytes"], len(self.tflite))
    self.assertEqual(micro.metadata["micro"]["flash_bytes"], len(micro.tflite))
    self.assertAlmostEqual(p["mac_overhead"],
                           p["macs"] / p["unpatched"]["macs"] - 1, places=4)
    np.testing.assert_array_equal(
        micro_runtime.MicroModel(micro.tflite).run_raw(
            np.ones((1, SIZE, SIZE, 3), np.int8)),
        micro_runtime.MicroModel(self.tflite).run_raw(
            np.ones((1, SIZE, SIZE, 3), np.int8)))


class SmallModelTest(absltest.TestCase):

  def test_auto_keeps_a_small_model_unpatched(self):
    # 32x32x1: the patches' persistent data outweighs the activations saved.
    converted = models.live_random_int8(0.35, 32)
    micro = micro_export.for_micro(converted, "auto")
    self.assertEqual(micro.tflite, converted.tflite)
    p = micro.metadata["micro"]["patches"]
    self.assertIsNone(p["spec"])
    self.assertRegex(p["chosen_by"], r"none of \d+ candidates beats")


class ConvertToolTest(absltest.TestCase):

  def _refused(self, *args, want):
    out = os.path.join(self.create_tempdir().full_path, "out")
    r = tools.run_tool(CONVERT, "--save_to", out, "--weights", "bundled",
                       *args)
    self.assertNotEqual(r.returncode, 0)
    lines = tools.error_lines(r)
    self.assertLen(lines, 1, r.stderr)
    self.assertRegex(lines[0], want)
    self.assertNotIn("Traceback", r.stderr)
    self.assertFalse(os.path.exists(out))

  def test_grid_that_does_not_divide(self):
    self._refused("--target", "micro", "--patches", "5x5@block_2",
                  want=r"block_2's output is 12x12, which a 5x5 grid does "
                  r"not divide .* grids that work: 2x2, 3x3, 4x4, 6x6")

  def test_patches_need_the_micro_target(self):
    self._refused("--patches", "auto", want=r"--target=micro")

  def test_malformed_and_unknown(self):
    self._refused("--target", "micro", "--patches", "4by4",
                  want=r"expected auto, off or RxC\[@LAYER\]")
    self._refused("--target", "micro", "--patches", "2x2@block_99",
                  want=r"no block output named 'block_99'.* block_1,")


if __name__ == "__main__":
  absltest.main()
