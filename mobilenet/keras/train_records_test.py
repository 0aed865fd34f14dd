"""`train --train_files` end to end, and its bad input, run as a user runs
them: //tools:make_tfrecords, then train on the shards."""

import json
import os
import subprocess
import time

from absl.testing import absltest

from mobilenet.testing import images
from mobilenet.testing import tools
from tools import shard_writer


def _train(*args):
  return tools.run_tool("mobilenet/keras/train.py", "train", *args,
                        timeout=600)


def _shards(test, num_shards=2):
  root = test.create_tempdir().full_path
  train = images.make_folder(os.path.join(root, "train"), per_class=8,
                             bad_files=False)
  val = images.make_folder(os.path.join(root, "val"), per_class=3, seed=1,
                           bad_files=False)
  out = os.path.join(root, "shards")
  shard_writer.write_shards(train, out, "train", num_shards=num_shards,
                            progress=False)
  shard_writer.write_shards(val, out, "val", num_shards=1, progress=False)
  return out


class TrainFilesTest(absltest.TestCase):

  def test_trains_exports_and_records_the_classes(self):
    shards = _shards(self)
    ckpt = self.create_tempdir().full_path
    # Relative patterns resolve against the user's shell directory.
    proc = tools.run_tool(
        "mobilenet/keras/train.py", "train", "--train_files=train-*",
        "--val_files=val-*", "--alpha=0.35", "--input_size=32",
        "--epochs=1", "--batch_size=8", "--bn_reestimate_batches=2",
        f"--checkpoint_dir={ckpt}", "--seed=3",
        env={"BUILD_WORKING_DIRECTORY": shards}, cwd="/", timeout=600)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    self.assertIn("final val_accuracy", proc.stdout)
    with open(os.path.join(ckpt, "model.json")) as f:
      sidecar = json.load(f)
    self.assertEqual(sidecar["labels"], ["c0", "c1", "c2"])
    with open(os.path.join(ckpt, "run.json")) as f:
      run = json.load(f)
    # 24 records, batch 8: 3 steps, every one counted.
    self.assertEqual(run["step"], 3)
    self.assertTrue(os.path.exists(os.path.join(ckpt, "model.h5")))


class BadInputTest(absltest.TestCase):

  def _assert_error(self, proc, needle):
    self.assertNotEqual(proc.returncode, 0)
    self.assertNotIn("Traceback", proc.stderr)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    self.assertLen(lines, 1, proc.stderr)
    self.assertStartsWith(lines[0], "error: ")
    self.assertIn(needle, lines[0])

  def test_one_line_errors_before_tensorflow(self):
    shards = _shards(self)
    tr, va = (f"--train_files={shards}/train-*", f"--val_files={shards}/val-*")
    self._assert_error(_train(tr, va, f"--data_dir={shards}"),
                       "pass one kind of input")
    self._assert_error(_train(tr), "needs both --train_files and --val_files")
    self._assert_error(_train(f"--train_files={shards}/nope-*", va),
                       "matches no files")
    self._assert_error(_train(f"--train_files={shards}/*", va),
                       "matches shards of 2 sets")
    os.remove(os.path.join(shards, "val.json"))
    self._assert_error(_train(tr, va), "no sidecar")
    self._assert_error(_train(tr, f"--val_files={shards}/train-*",
                              "--classes=5"), "--classes=5")


def _flip_a_byte(path, from_end=200):
  """A bad byte inside the last record's image: the file stays whole."""
  with open(path, "r+b") as f:
    f.seek(-from_end, os.SEEK_END)
    byte = f.read(1)
    f.seek(-from_end, os.SEEK_END)
    f.write(bytes([byte[0] ^ 0xFF]))


class DamagedShardTest(absltest.TestCase):
  """An interrupted copy or a bad disk: one line naming the shard, a prompt
  exit, never a traceback or a hang (the hang was intermittent)."""

  def _assert_names(self, stderr, shard, problem):
    self.assertNotIn("Traceback", stderr)
    errors = [l for l in stderr.splitlines() if l.startswith("error:")]
    self.assertLen(errors, 1, stderr)
    self.assertIn(f"shard {shard} is ", errors[0])
    self.assertIn(problem, errors[0])
    self.assertIn("//tools:make_tfrecords", errors[0])

  def test_truncated_shard_fails_before_training_every_time(self):
    shards = _shards(self, num_shards=4)
    bad = os.path.join(shards, "train-00002-of-00004")
    with open(bad, "r+b") as f:  # what an interrupted copy leaves
      f.truncate(os.path.getsize(bad) // 2)
    for _ in range(5):
      start = time.monotonic()
      proc = _train(f"--train_files={shards}/train-*",
                    f"--val_files={shards}/val-*", "--input_size=32",
                    f"--checkpoint_dir={self.create_tempdir().full_path}")
      self.assertEqual(proc.returncode, 1, proc.stderr)
      self._assert_names(proc.stderr, bad, "truncated or damaged: it ends "
                         "inside record")
      self.assertNotIn("epoch", proc.stdout)
      self.assertLess(time.monotonic() - start, 60)

  def _start(self, shards, log_dir):
    out = open(os.path.join(log_dir, "out"), "w+", encoding="utf8")
    err = open(os.path.join(log_dir, "err"), "w+", encoding="utf8")
    self.addCleanup(out.close)
    self.addCleanup(err.close)
    proc = tools.start_tool(
        "mobilenet/keras/train.py", "train",
        f"--train_files={shards}/train-*", f"--val_files={shards}/val-*",
        "--input_size=32", "--epochs=1", "--batch_size=8",
        "--bn_reestimate_batches=2", f"--checkpoint_dir={log_dir}/run",
        stdout=out, stderr=err)
    self.addCleanup(lambda: proc.poll() is None and proc.kill())
    return proc, out, err

  def _exit_after_error(self, proc, err, limit=600, grace=15):
    """Seconds from the `error:` line to the exit (at most `grace`)."""
    deadline = time.monotonic() + limit
    while proc.poll() is None and time.monotonic() < deadline:
      err.seek(0)
      if any(l.startswith("error:") for l in err.read().splitlines()):
        seen = time.monotonic()
        try:
          proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
          self.fail(f"no exit {grace} s after the error line")
        return time.monotonic() - seen
      time.sleep(0.2)
    self.assertIsNotNone(proc.poll(), "neither an error nor an exit")
    return 0.0

  def test_bad_record_mid_epoch_exits_promptly(self):
    shards = _shards(self)
    bad = os.path.join(shards, "train-00001-of-00002")
    _flip_a_byte(bad)  # the header walk passes; TF's CRC check fails
    proc, out, err = self._start(shards, self.create_tempdir().full_path)
    waited = self._exit_after_error(proc, err)
    err.seek(0)
    out.seek(0)
    stderr, stdout = err.read(), out.read()
    self.assertEqual(proc.returncode, 1, stderr[-3000:])
    self.assertIn("epoch 1/1", stdout)  # the train loop had started
    self._assert_names(stderr, bad, "damaged (corrupted record at")
    self.assertLess(waited, 15)

  def test_bad_validation_record(self):
    shards = _shards(self)
    bad = os.path.join(shards, "val-00000-of-00001")
    _flip_a_byte(bad)
    proc = _train(f"--train_files={shards}/train-*",
                  f"--val_files={shards}/val-*", "--input_size=32",
                  "--epochs=1", "--batch_size=8", "--bn_reestimate_batches=2",
                  f"--checkpoint_dir={self.create_tempdir().full_path}")
    self.assertEqual(proc.returncode, 1, proc.stderr[-3000:])
    self.assertIn("--val_files: ", proc.stderr)
    self._assert_names(proc.stderr, bad, "damaged (corrupted record at")


if __name__ == "__main__":
  absltest.main()
