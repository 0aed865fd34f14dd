"""The patch geometry against hand-worked windows and TensorFlow's SAME
convolution: a VALID conv over a patch's padded window equals the matching
rows of the whole-image SAME conv."""

import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

from mobilenet.tflite import patch_grid

StageOp = patch_grid.StageOp


class SameBeforeTest(parameterized.TestCase):

  # (size, kernel, stride, rows SAME pads on top), worked by hand from
  # TFLite's rule: out = ceil(size / stride), total = (out - 1) * stride +
  # kernel - size, the smaller half first.
  @parameterized.parameters((64, 3, 2, 0), (63, 3, 2, 1), (32, 3, 1, 1),
                            (7, 1, 1, 0), (9, 3, 2, 1), (5, 5, 1, 2))
  def test_hand_cases(self, size, kernel, stride, before):
    self.assertEqual(patch_grid.same_before(size, kernel, stride), before)


class WindowTest(parameterized.TestCase):

  def test_corner_and_inner_windows_of_a_stride_2_conv(self):
    op = StageOp(0, "DEPTHWISE_CONV_2D", (0,), 1, (3, 3), (2, 2), (0, 0))
    # 64 -> 32: output rows [0, 8) read input rows [0, 17), clipped from
    # [0, 17); rows [24, 32) read [48, 65): one row of bottom padding.
    top = patch_grid.input_window(op, patch_grid.Window(0, 8, 0, 8), (64, 64))
    self.assertEqual((top.rect, top.pads), ((0, 17, 0, 17), (0, 0, 0, 0)))
    end = patch_grid.input_window(op, patch_grid.Window(24, 32, 8, 16),
                                  (64, 64))
    self.assertEqual((end.rect, end.pads), ((48, 64, 16, 33), (0, 1, 0, 0)))

  def test_residual_branch_needs_the_hull(self):
    # expand 1x1 -> depthwise 3x3 s1 SAME -> project 1x1 -> ADD with the
    # block input: the block input is needed with the halo (for the
    # depthwise) and read by the ADD without it.
    ops = [StageOp(0, "CONV_2D", (0,), 1),
           StageOp(1, "DEPTHWISE_CONV_2D", (1,), 2, (3, 3), (1, 1), (1, 1)),
           StageOp(2, "CONV_2D", (2,), 3),
           StageOp(3, "ADD", (3, 0), 4)]
    shapes = {t: (1, 8, 8, 4) for t in range(5)}
    plan = patch_grid.plan_patch(ops, shapes, (0, 4, 4, 8))
    self.assertEqual(plan.need[0], (0, 5, 3, 8))
    self.assertEqual(plan.reads[(3, 1)].rect, (0, 4, 4, 8))
    self.assertEqual(plan.reads[(1, 0)].pads, (1, 0, 0, 1))

  @parameterized.parameters((9, 3, 2, 3), (16, 3, 2, 4), (12, 3, 1, 3),
                            (10, 5, 1, 2), (15, 3, 2, 4))
  def test_valid_conv_on_padded_windows_equals_same_conv(self, size, kernel,
                                                         stride, parts):
    x = np.random.default_rng(size).normal(size=(1, size, size, 2))
    w = np.random.default_rng(1).normal(size=(kernel, kernel, 2, 3))
    whole = tf.nn.conv2d(x, w, stride, "SAME").numpy()
    out = whole.shape[1]
    op = StageOp(0, "CONV_2D", (0,), 1, (kernel, kernel), (stride, stride),
                 (patch_grid.same_before(size, kernel, stride),) * 2)
    step = -(-out // parts)
    for a in range(0, out, step):
      b = min(a + step, out)
      win = patch_grid.input_window(op, patch_grid.Window(a, b, 0, out),
                                    (size, size))
      top, bottom, left, right = win.pads
      # TF pads with zeros; TFLite's int8 PAD with the zero point, i.e. 0.
      patch = np.pad(x[:, win.h0:win.h1, win.w0:win.w1],
                     ((0, 0), (top, bottom), (left, right), (0, 0)))
      got = tf.nn.conv2d(patch, w, stride, "VALID").numpy()
      np.testing.assert_allclose(got, whole[:, a:b], rtol=1e-6, atol=1e-9)

  @parameterized.parameters((9, 3, 2, 3), (16, 3, 2, 4), (12, 3, 1, 3),
                            (10, 5, 1, 2), (15, 3, 2, 4), (32, 3, 2, 2))
  def test_same_conv_on_border_windows_equals_same_conv(self, size, kernel,
                                                        stride, parts):
    # No PAD: TF's SAME conv on the window, whose padding stands in for the
    # image's at the border; the rows next to inner edges are not used.
    x = np.random.default_rng(size).normal(size=(1, size, size, 2))
    w = np.random.default_rng(1).normal(size=(kernel, kernel, 2, 2))
    whole = tf.nn.depthwise_conv2d(x, w, (1, stride, stride, 1),
                                   "SAME").numpy()
    out = whole.shape[1]
    op = StageOp(0, "DEPTHWISE_CONV_2D", (0,), 1, (kernel, kernel),
                 (stride, stride),
                 (patch_grid.same_before(size, kernel, stride),) * 2, True)
    step = -(-out // parts)
    for a in range(0, out, step):
      b = min(a + step, out)
      found = patch_grid.same_window(op, patch_grid.Window(a, b, a, b),
                                     (size, size))
      self.assertIsNotNone(found, (a, b))
      win, (o0, o1, p0, p1) = found
      got = tf.nn.depthwise_conv2d(x[:, win.h0:win.h1, win.w0:win.w1], w,
                                   (1, stride, stride, 1), "SAME").numpy()
      self.assertEqual(got.shape[1:3], (o1 - o0, p1 - p0))
      np.testing.assert_allclose(got[:, a - o0:b - o0, a - p0:b - p0],
                                 whole[:, a:b, a:b], rtol=1e-6, atol=1e-9)


class GridTest(absltest.TestCase):

  def test_tiles_partition_the_output(self):
    covered = np.zeros((12, 8), int)
    for h0, h1, w0, w1 in patch_grid.tiles(12, 8, 3, 2):
      covered[h0:h1, w0:w1] += 1
    self.assertTrue(np.all(covered == 1))

  def test_grid_that_does_not_divide_names_those_that_do(self):
    with self.assertRaisesRegex(
        patch_grid.GridError,
        r"5x5@block_2: block_2's output is 32x32, .* grids that work: 2x2, "
        r"4x4, 8x8,"):
      patch_grid.check_grid(5, 5, "block_2", 32, 32)
    patch_grid.check_grid(2, 8, "block_2", 32, 32)
    # TFLM's CONCATENATION takes 10 inputs at most.
    with self.assertRaisesRegex(patch_grid.GridError, "at most 10"):
      patch_grid.check_grid(16, 1, "block_1", 32, 32)

  def test_parse(self):
    self.assertEqual(patch_grid.parse_grid("4X2"), (4, 2))
    for bad in ("4", "x4", "4x4x4", "1x1", "0x3", "ax2", ""):
      with self.assertRaises(patch_grid.GridError):
        patch_grid.parse_grid(bad)

  def test_flag_errors_quote_what_the_user_wrote(self):
    from mobilenet.tflite import patch_search  # pylint: disable=g-import-not-at-top
    for spec, needle in (("0x2@block_1", "--patches=0x2@block_1: a grid "),
                         ("", "--patches=: expected auto, off or RxC"),
                         ("  ", "--patches=: expected auto, off or RxC"),
                         ("2x2@block_1,3x@block_2",
                          "--patches=2x2@block_1,3x@block_2: expected")):
      with self.assertRaisesRegex(patch_grid.GridError, "^" + needle):
        patch_search.parse(spec)
    self.assertIsNone(patch_search.parse("off"))
    self.assertIsNone(patch_search.parse(None))


if __name__ == "__main__":
  absltest.main()
