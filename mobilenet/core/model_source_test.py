"""model_source.resolve against files written by Keras itself and by
params.save_h5, with the network disabled."""

import json
import os
from unittest import mock
import urllib.error

from absl.testing import absltest
import h5py
import keras
from keras.src.legacy.saving import legacy_h5_format
from keras.src.utils import file_utils
import numpy as np

from mobilenet.core import arch
from mobilenet.core import checkpoint
from mobilenet.core import labels as labels_lib
from mobilenet.core import model_source
from mobilenet.core import params as params_lib
from mobilenet.core import weights as weights_lib
from mobilenet.testing import keras_reference


def _no_network(*args, **kwargs):
  raise urllib.error.URLError("network disabled in test")


def _keras_file(path, alpha, rows, channels=3, classes=1000,
                include_top=True, seed=0):
  """An official-layout weight file written by Keras' legacy saver."""
  model = keras.applications.MobileNetV2(
      weights=None, alpha=alpha, input_shape=(rows, rows, channels),
      include_top=include_top, classes=classes)
  rng = np.random.default_rng(seed)
  model.set_weights([rng.normal(0, 0.1, w.shape).astype(np.float32)
                     + (1.0 if "variance" in w.path else 0.0)
                     for w in model.weights])
  with h5py.File(path, "w") as f:
    legacy_h5_format.save_weights_to_hdf5_group(f, model)
  net = arch.derive(alpha, channels, classes, include_top)
  return params_lib.from_keras_model(model, net)


def _assert_params_equal(got, want):
  assert set(got) == set(want), (set(got) ^ set(want))
  for layer in want:
    for k in want[layer]:
      np.testing.assert_array_equal(got[layer][k], want[layer][k])


class RandomTest(absltest.TestCase):

  def test_defaults_and_overrides(self):
    s = model_source.resolve("random")
    self.assertEqual((s.alpha, s.input_size, s.channels, s.classes),
                     (1.0, 224, 3, 1000))
    self.assertEqual(s.labels, labels_lib.imagenet_labels())
    self.assertIsNone(s.weights_path)
    self.assertIsNone(s.weights_sha256)
    s = model_source.resolve("random", alpha=0.35, input_size=32, channels=1,
                             classes=10, seed=3)
    net = arch.derive(0.35, 1, 10)
    params_lib.check(s.params, net)
    self.assertEqual(s.labels, [str(i) for i in range(10)])
    _assert_params_equal(s.params, params_lib.init(net, 3))

  def test_no_top(self):
    s = model_source.resolve("random", alpha=0.35, include_top=False)
    self.assertNotIn("predictions", s.params)
    self.assertIsNone(s.classes)
    self.assertEqual(s.labels, [])

  def test_bad_alpha_and_size(self):
    with self.assertRaisesRegex(model_source.ModelSourceError, "alpha"):
      model_source.resolve("random", alpha=-1)
    with self.assertRaisesRegex(model_source.ModelSourceError, ">= 32"):
      model_source.resolve("random", input_size=8)


class KerasFileTest(absltest.TestCase):

  def test_infers_alpha_channels_classes_and_size(self):
    d = self.create_tempdir().full_path
    path = os.path.join(
        d, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96.h5")
    want = _keras_file(path, 0.35, 96, classes=7)
    s = model_source.resolve(path)
    self.assertEqual((s.alpha, s.input_size, s.channels, s.classes),
                     (0.35, 96, 3, 7))
    self.assertLen(s.labels, 7)
    self.assertEqual(s.weights_path, path)
    self.assertLen(s.weights_sha256, 64)
    _assert_params_equal(s.params, want)

  def test_gray_no_top_and_given_size(self):
    path = os.path.join(self.create_tempdir().full_path, "w.h5")
    want = _keras_file(path, 0.5, 32, channels=1, include_top=False)
    with self.assertRaisesRegex(model_source.ModelSourceError, "no-top"):
      model_source.resolve(path)
    s = model_source.resolve(path, include_top=False, input_size=48)
    self.assertEqual((s.alpha, s.input_size, s.channels), (0.5, 48, 1))
    _assert_params_equal(s.params, want)

  def test_wrong_alpha_refused(self):
    path = os.path.join(self.create_tempdir().full_path, "w.h5")
    _keras_file(path, 0.35, 32, include_top=False)
    with self.assertRaisesRegex(
        model_source.ModelSourceError, "holds alpha=0.35 weights, but "
        "alpha=1.0 was requested; drop --alpha or pass --alpha=0.35"):
      model_source.resolve(path, alpha=1.0, include_top=False)

  def test_not_a_weight_file(self):
    d = self.create_tempdir()
    junk = d.create_file("junk.h5", content="not hdf5").full_path
    with self.assertRaisesRegex(model_source.ModelSourceError, "HDF5"):
      model_source.resolve(junk)
    with self.assertRaisesRegex(model_source.ModelSourceError, "no such file"):
      model_source.resolve(os.path.join(d.full_path, "missing.h5"))


class NothingFromFileNamesTest(absltest.TestCase):
  """Metadata comes from weight shapes, our sidecar or the flags; only the
  exact official Keras name pattern is read, and every assumption is said."""

  def test_trailing_numbers_in_a_name_are_not_the_input_size(self):
    d = self.create_tempdir().full_path
    for name in ("mnv2_finetuned_1001.h5", "epoch_50.h5",
                 "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96.h5",
                 "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_64.h5"):
      with self.subTest(name):
        path = os.path.join(d, name)
        # alpha 0.35: the third name's alpha disagrees with the shapes, the
        # fourth's rows are no Keras size; neither is read.
        _keras_file(path, 0.35, 32, classes=1001)
        s = model_source.resolve(path)
        self.assertEqual((s.alpha, s.input_size, s.classes), (0.35, 224, 1001))
        self.assertEqual(s.kind, "keras_file")
        self.assertIn("input size 224 (assumed; pass --input_size)", s.notes)
        s = model_source.resolve(path, input_size=160)
        self.assertEqual(s.input_size, 160)
        self.assertFalse([n for n in s.notes if "input size" in n])

  def test_official_pattern_is_read_and_not_noted(self):
    path = os.path.join(
        self.create_tempdir().full_path,
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_128_no_top.h5")
    _keras_file(path, 0.35, 32, include_top=False)
    s = model_source.resolve(path, include_top=False)
    self.assertEqual((s.input_size, s.notes), (128, []))

  def test_default_labels_by_output_count_are_said(self):
    d = self.create_tempdir().full_path
    imagenet = labels_lib.imagenet_labels()
    for classes, first, note in (
        (1000, imagenet[0], "the ImageNet names (assumed for 1000 outputs"),
        (1001, "background", "background + the ImageNet names (assumed for "
         "1001 outputs"),
        (7, "0", "class indices 0..6 (the weights carry no names; pass "
         "--labels FILE)")):
      with self.subTest(classes):
        path = os.path.join(d, f"w{classes}.h5")
        _keras_file(path, 0.35, 32, classes=classes)
        s = model_source.resolve(path, input_size=32)
        self.assertLen(s.labels, classes)
        self.assertEqual(s.labels[0], first)
        self.assertLen(s.notes, 1)
        self.assertIn(note, s.notes[0])
        self.assertTrue(s.notes[0].startswith("labels: "))

  def test_labels_file_replaces_the_names_and_the_note(self):
    d = self.create_tempdir()
    path = os.path.join(d.full_path, "w.h5")
    _keras_file(path, 0.35, 32, classes=1001)
    names = ["background"] + [f"n{i}" for i in range(1000)]
    with_bg = d.create_file("bg.txt", content="\n".join(names)).full_path
    without = d.create_file("nobg.txt",
                            content="\n".join(names[1:])).full_path
    for labels in (with_bg, without):
      s = model_source.resolve(path, input_size=32, labels=labels)
      self.assertEqual(s.labels, names)
      self.assertEqual(s.notes, [])
    short = d.create_file("short.txt", content="a\nb\n").full_path
    with self.assertRaisesRegex(model_source.ModelSourceError,
                                "--labels: .*2 labels for 1001"):
      model_source.resolve(path, input_size=32, labels=short)

  def test_an_imagenet_named_file_is_not_imagenet(self):
    path = os.path.join(self.create_tempdir().full_path, "mnv2_imagenet.h5")
    _keras_file(path, 0.35, 32, classes=1000)
    s = model_source.resolve(path)
    self.assertEqual(s.kind, "keras_file")
    self.assertNotIn("ImageNet MobileNetV2", s.description)

  def test_kinds(self):
    self.assertEqual(model_source.resolve("random", alpha=0.35).kind, "random")
    d = self.create_tempdir().full_path
    net = arch.derive(0.35, 1, 2)
    h5 = os.path.join(d, "imagenet.h5")
    params_lib.save_h5(params_lib.init(net), h5, net)
    checkpoint.write_sidecar(os.path.join(d, "imagenet.json"), h5, alpha=0.35,
                             input_size=40, channels=1, labels=["a", "b"])
    s = model_source.resolve(h5)
    self.assertEqual((s.kind, s.input_size, s.notes), ("checkpoint", 40, []))
    self.assertEqual(model_source.resolve("bundled").kind, "bundled")


class CheckpointTest(absltest.TestCase):

  def _write(self, d, alpha=0.35, channels=1, labels=("a", "b", "c")):
    net = arch.derive(alpha, channels, len(labels))
    params = params_lib.init(net, seed=5)
    h5 = os.path.join(d, "model.h5")
    params_lib.save_h5(params, h5, net)
    js = os.path.join(d, "model.json")
    checkpoint.write_sidecar(js, h5, alpha=alpha, input_size=40,
                               channels=channels, labels=list(labels),
                               train_command="train --x")
    return params, h5, js

  def test_json_h5_and_directory_all_resolve(self):
    d = self.create_tempdir().full_path
    params, h5, js = self._write(d)
    with open(js) as f:
      meta = json.load(f)
    self.assertEqual(meta["weights_file"], "model.h5")  # relative: movable
    for spec in (js, h5, d):
      s = model_source.resolve(spec)
      self.assertEqual((s.alpha, s.input_size, s.channels, s.classes),
                       (0.35, 40, 1, 3))
      self.assertEqual(s.labels, ["a", "b", "c"])
      self.assertEqual(s.normalization, "tf")
      self.assertEqual(s.weights_path, h5)
      self.assertEqual(s.metadata["train_command"], "train --x")
      _assert_params_equal(s.params, params)

  def test_labels_file(self):
    d = self.create_tempdir()
    _, _, js = self._write(d.full_path)
    d.create_file("names.txt", content="x\ny\nz\n")
    with open(js) as f:
      meta = json.load(f)
    del meta["labels"]
    meta["labels_file"] = "names.txt"
    with open(js, "w") as f:
      json.dump(meta, f)
    self.assertEqual(model_source.resolve(js).labels, ["x", "y", "z"])

  def test_corrupt_or_replaced_weights_refused(self):
    d = self.create_tempdir().full_path
    _, h5, js = self._write(d)
    with open(h5, "r+b") as f:
      f.seek(-10, os.SEEK_END)
      f.write(b"0123456789")
    with self.assertRaisesRegex(model_source.ModelSourceError, "sha256"):
      model_source.resolve(js)

  def test_alpha_mismatch_and_bad_sidecar(self):
    d = self.create_tempdir()
    _, _, js = self._write(d.full_path)
    with self.assertRaisesRegex(model_source.ModelSourceError,
                                "alpha=0.35 model"):
      model_source.resolve(js, alpha=1.0)
    bad = d.create_file("bad.json", content="{").full_path
    with self.assertRaisesRegex(model_source.ModelSourceError, "JSON"):
      model_source.resolve(bad)
    other = d.create_file("other.json", content='{"a": 1}').full_path
    with self.assertRaisesRegex(model_source.ModelSourceError, "sidecar"):
      model_source.resolve(other)

  def test_messages_are_one_line(self):
    d = self.create_tempdir().full_path
    for spec in (os.path.join(d, "nope"), "",):
      with self.assertRaises(model_source.ModelSourceError) as ctx:
        model_source.resolve(spec)
      self.assertNotIn("\n", str(ctx.exception))


class BundledTest(absltest.TestCase):

  def test_bundled_is_an_mnist_model(self):
    s = model_source.resolve("bundled")
    self.assertEqual(s.classes, 10)
    self.assertEqual(s.labels, labels_lib.mnist_labels())
    self.assertIn("bundled MNIST model (data/bundled/mnist_mobilenet_v2.h5)",
                  s.description)
    self.assertEqual(s.weights_sha256,
                     model_source.sha256_file(s.weights_path))
    self.assertIn("train_command", s.metadata)

  def test_recorded_heldout_accuracy_is_what_keras_measures(self):
    """The sidecar's number (quoted by the README) against keras.applications
    on the 1,000 held-out digits."""
    s = model_source.resolve("bundled")
    root = labels_lib.data_path("mnist_heldout")
    paths, truth = [], []
    for digit in sorted(os.listdir(root)):
      for name in sorted(os.listdir(os.path.join(root, digit))):
        paths.append(os.path.join(root, digit, name))
        truth.append(s.labels.index(digit))
    self.assertLen(paths, s.metadata["heldout_images"])
    measured = float(np.mean(keras_reference.bundled_top1(paths) ==
                             np.asarray(truth)))
    # Keras' kernels vs ours may flip one borderline digit: 1/1000 margin.
    self.assertAlmostEqual(measured, s.metadata["heldout_accuracy"],
                           delta=1.5 / len(paths))

  def test_keras_applications_reads_the_file_and_the_digits(self):
    digits = (0, 2, 3, 7, 9)
    top1 = keras_reference.bundled_top1(
        [labels_lib.data_path(f"samples/digit_{d}.png") for d in digits])
    self.assertEqual(list(top1), list(digits))


class ImagenetAndAutoTest(absltest.TestCase):

  def test_imagenet_offline_is_a_clear_error(self):
    cache = self.create_tempdir().full_path
    with mock.patch.object(file_utils, "urlretrieve", _no_network):
      with self.assertRaises(model_source.ModelSourceError) as ctx:
        model_source.resolve("imagenet", alpha=0.35, cache_dir=cache)
    self.assertIn("0.35_224.h5", str(ctx.exception))

  def test_imagenet_from_cache(self):
    cache = self.create_tempdir().full_path
    os.makedirs(os.path.join(cache, "models"))
    path = os.path.join(cache, "models",
                        weights_lib.file_name(0.35, 96, include_top=False))
    want = _keras_file(path, 0.35, 96, include_top=False)
    with mock.patch.object(file_utils, "urlretrieve", _no_network):
      s = model_source.resolve("auto", alpha=0.35, input_size=96,
                               include_top=False, cache_dir=cache)
    self.assertIn("ImageNet", s.description)
    self.assertEqual(s.kind, "imagenet")
    self.assertEqual((s.alpha, s.input_size, s.channels), (0.35, 96, 3))
    self.assertEqual(s.weights_path, path)
    _assert_params_equal(s.params, want)

  def test_auto_falls_back_to_bundled_with_one_log_line(self):
    cache = self.create_tempdir().full_path
    with mock.patch.object(file_utils, "urlretrieve", _no_network), \
        mock.patch.object(model_source.logging, "info") as info:
      s = model_source.resolve("auto", cache_dir=cache)
    self.assertEqual(info.call_count, 1)
    line = info.call_args[0][0] % info.call_args[0][1:]
    self.assertNotIn("\n", line)
    self.assertIn("bundled MNIST model", line)
    self.assertIn("unavailable", line)
    self.assertEqual(s.classes, 10)


if __name__ == "__main__":
  absltest.main()
