"""TensorBoard event files read back with TensorFlow's own summary iterator
(independent of the writer, mobilenet/keras/tensorboard_log.py), checked
against a run's run.json."""

import glob
import json
import os

import numpy as np

# run.json history key -> (TensorBoard run, tag)
HISTORY_TAGS = {"loss": ("train", "epoch/loss"),
                "accuracy": ("train", "epoch/accuracy"),
                "seconds": ("train", "epoch/seconds"),
                "images_per_second": ("train", "epoch/images_per_second"),
                "val_loss": ("validation", "epoch/loss"),
                "val_accuracy": ("validation", "epoch/accuracy")}


def read(run_dir):
  """{(run, tag): [(step, value), ...]} in file order, every event kept
  (duplicates included); an image summary's value is its image count."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  out = {}
  for run in ("train", "validation"):
    pattern = os.path.join(run_dir, "tensorboard", run, "*tfevents*")
    for path in sorted(glob.glob(pattern)):
      for event in tf.compat.v1.train.summary_iterator(path):
        for v in event.summary.value:
          array = tf.make_ndarray(v.tensor)
          value = float(array) if array.ndim == 0 else len(array) - 2
          out.setdefault((run, v.tag), []).append((event.step, value))
  return out


def assert_match_run(test, run_dir, steps, every=1, input_epochs=None):
  """The events of `run_dir` hold each epoch of its run.json history with
  the same values (as float32), each epoch once, step/loss and
  step/learning_rate at every `every`-th step of 1..`steps` once, and input
  images of each epoch (default) or of `input_epochs` (an interrupted epoch
  has them too); returns the events."""
  with open(os.path.join(run_dir, "run.json"), encoding="utf8") as f:
    history = json.load(f)["history"]
  events = read(run_dir)
  for key, tag in HISTORY_TAGS.items():
    test.assertEqual(events.get(tag), [
        (h["epoch"], float(np.float32(h[key]))) for h in history], tag)
  want_steps = list(range(every, steps + 1, every))
  for tag in ("step/loss", "step/learning_rate"):
    test.assertEqual([s for s, _ in events.get(("train", tag), [])],
                     want_steps, tag)
  if input_epochs is None:
    input_epochs = [h["epoch"] for h in history]
  test.assertEqual(events.get(("train", "epoch/inputs")),
                   [(e, 3) for e in input_epochs])
  return events
