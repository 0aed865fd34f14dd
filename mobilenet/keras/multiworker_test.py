"""multiworker: TF_CONFIG -> Worker, where each worker saves, and bad
TF_CONFIG as one error line before TensorFlow loads.  (Real worker
processes: train_multiworker_test.)"""

import json
import os
import subprocess
import sys
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized

from mobilenet.keras import multiworker
from mobilenet.keras.train_config import TrainError
from mobilenet.testing import images
from mobilenet.testing import tools


def _env(cluster, kind, index):
  return {"TF_CONFIG": json.dumps({"cluster": cluster,
                                   "task": {"type": kind, "index": index}})}


TWO = {"worker": ["a:1", "b:1"]}
CHIEF_AND_TWO = {"chief": ["c:1"], "worker": ["a:1", "b:1"]}


class WorkerTest(parameterized.TestCase):

  def test_single_process_strategies_need_no_tf_config(self):
    with mock.patch.dict(os.environ, {}, clear=True):
      for strategy in ("default", "mirrored"):
        self.assertEqual(multiworker.this_worker(strategy),
                         multiworker.Worker(0, 1, True))

  @parameterized.parameters(
      (TWO, "worker", 0, multiworker.Worker(0, 2, True)),
      (TWO, "worker", 1, multiworker.Worker(1, 2, False)),
      (CHIEF_AND_TWO, "chief", 0, multiworker.Worker(0, 3, True)),
      (CHIEF_AND_TWO, "worker", 0, multiworker.Worker(1, 3, False)),
      (CHIEF_AND_TWO, "worker", 1, multiworker.Worker(2, 3, False)))
  def test_position_and_chief(self, cluster, kind, index, want):
    with mock.patch.dict(os.environ, _env(cluster, kind, index)):
      self.assertEqual(multiworker.this_worker("multiworker"), want)

  @parameterized.parameters(
      (None, "needs TF_CONFIG"),
      ("{not json", "TF_CONFIG is not valid"),
      (json.dumps({"cluster": TWO}), "TF_CONFIG is not valid"),
      (_env(TWO, "worker", 2)["TF_CONFIG"], "not in its cluster"),
      (_env(TWO, "ps", 0)["TF_CONFIG"], "not in its cluster"),
      (_env({"chief": ["a:1", "b:1"]}, "chief", 0)["TF_CONFIG"],
       "at most one"))
  def test_bad_tf_config(self, raw, needle):
    env = {} if raw is None else {"TF_CONFIG": raw}
    with mock.patch.dict(os.environ, env, clear=True):
      with self.assertRaisesRegex(TrainError, needle):
        multiworker.this_worker("multiworker")

  def test_only_the_chief_saves_into_the_run_directory(self):
    run = self.create_tempdir().full_path
    chief, other = multiworker.Worker(0, 2, True), multiworker.Worker(
        1, 2, False)
    self.assertEqual(multiworker.save_dir(run, chief), run)
    tmp = self.create_tempdir().full_path
    with mock.patch.dict(os.environ, {"TMPDIR": tmp}):
      multiworker.tempfile.tempdir = None  # re-read TMPDIR
      try:
        path = multiworker.save_dir(run, other)
        # Deterministic: a restarted worker finds its predecessor's.
        self.assertEqual(multiworker.save_dir(run, other), path)
        self.assertEqual(os.path.dirname(path), tmp)
        self.assertNotEqual(
            multiworker.save_dir(run + "x", other), path)
        os.makedirs(os.path.join(path, "sub"))
        multiworker.discard(run, other)
        self.assertFalse(os.path.exists(path))
        multiworker.discard(run, chief)  # never deletes the run directory
        self.assertTrue(os.path.isdir(run))
      finally:
        multiworker.tempfile.tempdir = None


# A process whose train() loses its peer at once, as run_restarting sees it;
# "sigterm" first signals itself through the trainer's own handler.
_LOSES_ITS_PEER = """
import os, signal, sys
import tensorflow as tf
from mobilenet.keras import multiworker, train_lib
print("start", os.environ.get("MOBILENET_TRAIN_RESTARTS", "0"), flush=True)
def train():
  if sys.argv[1] == "sigterm":
    signal.signal(signal.SIGTERM, train_lib._StopFlag())
    os.kill(os.getpid(), signal.SIGTERM)
  raise tf.errors.UnavailableError(None, None, "peer gone\\nsecond line")
sys.exit(multiworker.run_restarting(train, multiworker.Worker(0, 2, True)))
"""


class RestartTest(absltest.TestCase):
  """run_restarting in real processes: os.execv of the same command, the
  count carried over, exit 75 after the last restart, 130 when stopping."""

  def _run(self, mode, restarts):
    script = self.create_tempfile("loses_its_peer.py",
                                  content=_LOSES_ITS_PEER).full_path
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path),
               MOBILENET_TRAIN_RESTARTS=str(restarts))
    return subprocess.run([sys.executable, script, mode], env=env,
                          capture_output=True, text=True, timeout=300,
                          check=False)

  def test_restarts_in_place_then_exits_75(self):
    last = multiworker.MAX_RESTARTS
    proc = self._run("lose", last - 2)
    self.assertEqual(proc.returncode, multiworker.RESTART_EXIT_CODE,
                     proc.stderr)
    # The same command ran again twice (same PID: os.execv), counting up.
    self.assertEqual(proc.stdout.split(),
                     ["start", str(last - 2), "start", str(last - 1),
                      "start", str(last)])
    ours = [l for l in proc.stderr.splitlines() if l.startswith(
        ("worker 0:", "error:"))]
    self.assertEqual(ours[:2], [
        f"worker 0: lost the cluster (UnavailableError: peer gone); "
        f"restarting ({n}/{last}) to resume from the last checkpoint when "
        "every worker is back." for n in (last - 1, last)])
    self.assertLen(ours, 3, proc.stderr)
    self.assertIn(f"after {last} restarts; exiting with 75", ours[2])

  def test_a_signalled_worker_exits_130_instead_of_restarting(self):
    proc = self._run("sigterm", 0)
    self.assertEqual(proc.returncode, 130, proc.stderr)
    self.assertEqual(proc.stdout.split(), ["start", "0"])
    self.assertIn("worker 0: stopped by a signal", proc.stderr)
    self.assertNotIn("restarting", proc.stderr)


class CommandLineTest(absltest.TestCase):

  def test_bad_tf_config_is_one_error_line(self):
    data = images.make_folder(self.create_tempdir().full_path, per_class=2,
                              bad_files=False)
    run = os.path.join(self.create_tempdir().full_path, "run")
    proc = tools.run_tool(
        "mobilenet/keras/train.py", "train", f"--data_dir={data}",
        "--strategy=multiworker", f"--checkpoint_dir={run}",
        env={"TF_CONFIG": json.dumps({"cluster": TWO})}, timeout=300)
    self.assertEqual(proc.returncode, 1)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    self.assertLen(lines, 1, proc.stderr)
    self.assertIn("error: TF_CONFIG is not valid", lines[0])
    self.assertIn("Training on N machines", lines[0])
    self.assertFalse(os.path.exists(run))


if __name__ == "__main__":
  absltest.main()
