"""Tests for labels: the shipped files, alignment and top-k decoding."""

import os

from absl.testing import absltest
import numpy as np

from mobilenet.core import labels

# Spot checks from the source of data/imagenet_labels.txt: keras-hub 0.32.0,
# keras_hub/src/utils/imagenet/imagenet_utils.py IMAGENET_NAMES (the table
# behind Keras' imagenet_class_index.json).
KNOWN_IMAGENET = {
    0: "tench",
    1: "goldfish",
    2: "great_white_shark",
    21: "kite",
    134: "crane",
    207: "golden_retriever",
    417: "balloon",
    517: "crane",
    638: "maillot",
    639: "maillot",
    850: "teddy",
    986: "yellow_lady's_slipper",
    996: "hen-of-the-woods",
    999: "toilet_tissue",
}


class ShippedFilesTest(absltest.TestCase):

  def test_imagenet_file(self):
    names = labels.imagenet_labels()
    self.assertLen(names, 1000)
    for index, name in KNOWN_IMAGENET.items():
      self.assertEqual(names[index], name, f"index {index}")
    # Keras' list repeats exactly two names; everything else is unique.
    repeated = sorted({n for n in names if names.count(n) > 1})
    self.assertEqual(repeated, ["crane", "maillot"])
    self.assertLen(set(names), 998)
    for name in names:
      self.assertEqual(name, name.strip())
      self.assertNotIn(" ", name)  # Keras joins words with "_"

  def test_imagenet_raw_bytes(self):
    with open(labels.data_path(labels.IMAGENET_LABELS), "rb") as f:
      raw = f.read()
    self.assertTrue(raw.endswith(b"\n"))
    self.assertNotIn(b"\r", raw)
    self.assertEqual(raw.count(b"\n"), 1000)

  def test_mnist_file(self):
    self.assertEqual(labels.mnist_labels(), [str(d) for d in range(10)])


class LoadLabelsTest(absltest.TestCase):

  def _write(self, text, name="labels.txt", mode="w"):
    path = os.path.join(self.create_tempdir().full_path, name)
    encoding = None if "b" in mode else "utf-8"
    with open(path, mode, encoding=encoding) as f:
      f.write(text)
    return path

  def test_tolerates_bom_crlf_and_trailing_blank_lines(self):
    path = self._write("\ufeffcat\r\ndog \r\n\r\n\n", mode="w")
    self.assertEqual(labels.load_labels(path), ["cat", "dog"])

  def test_blank_line_in_middle_is_an_error(self):
    path = self._write("cat\n\ndog\n")
    with self.assertRaisesRegex(labels.LabelError, "blank line 2"):
      labels.load_labels(path)

  def test_missing_and_empty(self):
    missing = os.path.join(self.create_tempdir().full_path, "nope.txt")
    with self.assertRaisesRegex(labels.LabelError, "no such labels file"):
      labels.load_labels(missing)
    with self.assertRaisesRegex(labels.LabelError, "empty"):
      labels.load_labels(self._write("\n\n"))

  def test_binary_file_is_an_error(self):
    path = self._write(b"\xff\xfe\x00\x81\x9f", mode="wb")
    with self.assertRaisesRegex(labels.LabelError, "UTF-8"):
      labels.load_labels(path)


class AlignTest(absltest.TestCase):

  def test_same_length_unchanged(self):
    self.assertEqual(labels.align(["a", "b"], 2), ["a", "b"])

  def test_background_file_for_1000_output_model(self):
    with_bg = ["background"] + labels.imagenet_labels()
    self.assertLen(with_bg, 1001)
    aligned = labels.align(with_bg, 1000)
    self.assertEqual(aligned, labels.imagenet_labels())

  def test_1000_names_for_1001_output_model(self):
    aligned = labels.align(labels.imagenet_labels(), 1001)
    self.assertLen(aligned, 1001)
    self.assertEqual(aligned[0], "background")
    self.assertEqual(aligned[1], "tench")
    self.assertEqual(aligned[1000], "toilet_tissue")

  def test_extra_line_that_is_not_background(self):
    with self.assertRaisesRegex(labels.LabelError, "not a background"):
      labels.align(["tench", "goldfish", "shark"], 2)

  def test_wrong_count(self):
    with self.assertRaisesRegex(labels.LabelError, "10 labels for 1000"):
      labels.align(labels.mnist_labels(), 1000)
    with self.assertRaises(labels.LabelError):
      labels.align(["background", "a", "b", "c"], 2)


class DecodePredictionsTest(absltest.TestCase):

  def test_top_k_order(self):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(1000)).astype(np.float32)
    got = labels.decode_predictions(probs, labels.imagenet_labels(), top_k=5)
    self.assertLen(got, 5)
    # Reference ranking: a plain Python sort of (score, index) pairs.
    ranked = sorted(range(1000), key=lambda i: -float(probs[i]))[:5]
    self.assertEqual([i for i, _, _ in got], ranked)
    names = labels.imagenet_labels()
    for index, name, score in got:
      self.assertEqual(name, names[index])
      self.assertEqual(score, float(probs[index]))
    scores = [s for _, _, s in got]
    self.assertEqual(scores, sorted(scores, reverse=True))

  def test_known_winner(self):
    probs = np.zeros(1000, np.float32)
    probs[1], probs[999], probs[0] = 0.7, 0.2, 0.1
    got = labels.decode_predictions(probs, labels.imagenet_labels(), top_k=3)
    self.assertEqual([(i, n) for i, n, _ in got],
                     [(1, "goldfish"), (999, "toilet_tissue"), (0, "tench")])

  def test_ties_keep_index_order_and_k_is_capped(self):
    got = labels.decode_predictions([0.25, 0.5, 0.25], ["a", "b", "c"],
                                    top_k=10)
    self.assertEqual(got, [(1, "b", 0.5), (0, "a", 0.25), (2, "c", 0.25)])

  def test_batch(self):
    probs = np.array([[0.1, 0.9], [0.8, 0.2]])
    got = labels.decode_predictions(probs, ["zero", "one"], top_k=1)
    self.assertEqual(got, [[(1, "one", 0.9)], [(0, "zero", 0.8)]])

  def test_1001_outputs_with_1000_names(self):
    probs = np.zeros(1001)
    probs[2] = 1.0  # output 2 = class 1 once background takes output 0
    (index, name, _), = labels.decode_predictions(
        probs, labels.imagenet_labels(), top_k=1)
    self.assertEqual((index, name), (2, "goldfish"))

  def test_bad_input(self):
    with self.assertRaises(ValueError):
      labels.decode_predictions(np.zeros((1, 2, 3)), ["a"], top_k=1)
    with self.assertRaises(ValueError):
      labels.decode_predictions([0.5, 0.5], ["a", "b"], top_k=0)
    with self.assertRaises(labels.LabelError):
      labels.decode_predictions(np.zeros(5), ["a", "b"], top_k=1)


if __name__ == "__main__":
  absltest.main()
