"""--strategy=multiworker: this process's place in the TF_CONFIG cluster,
where it writes, how it gets the chief's state, and what it does when a peer
dies.

* Every worker runs the same `train` command with its own TF_CONFIG.  Only
  the chief (task type "chief", else worker 0) writes the run directory,
  the export and the curve.  The others must still call every checkpoint
  save (tf.distribute's rule: a save may take part in collective ops); they
  write into a temp dir (`save_dir`) and delete it right after.
* Resuming: the chief restores its run directory and `broadcast_from_chief`
  copies every restored variable to the other workers (one all-reduce of
  the chief's values with zeros), so only the chief needs the checkpoint;
  no shared file system is required.
* A dead peer makes the collectives of the survivors fail (gRPC Unavailable,
  or the coordination service's heartbeat aborting them).  A process cannot
  reuse its collective runtime after that, so `run_restarting` logs one line
  and replaces the process by a fresh run of the same command (os.execv):
  it rejoins the cluster when the dead worker is restarted, and all resume
  from the chief's last checkpoint.  After MAX_RESTARTS in-place restarts a
  worker exits with RESTART_EXIT_CODE for its scheduler to restart it.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile

from mobilenet.keras.train_config import TrainError

# In-place restarts of one process before it leaves the decision to its
# scheduler (each waits for the dead peer to come back).
MAX_RESTARTS = 10
# EX_TEMPFAIL: "try again"; a scheduler restarts the worker on it.
RESTART_EXIT_CODE = 75
_RESTARTS_ENV = "MOBILENET_TRAIN_RESTARTS"
# Set when SIGINT/SIGTERM reached this process (train_lib): the cluster is
# being stopped, so a lost peer is expected and no reason to restart.
stopping = False


@dataclasses.dataclass(frozen=True)
class Worker:
  index: int = 0  # position among the cluster's tasks (chief first)
  count: int = 1
  chief: bool = True

  @property
  def name(self):
    return f"worker {self.index}"


def this_worker(strategy):
  """The Worker this process is; a single process outside multiworker.
  Bad or missing TF_CONFIG is a TrainError naming the fix."""
  if strategy != "multiworker":
    return Worker()
  raw = os.environ.get("TF_CONFIG")
  fix = ("set TF_CONFIG on each worker, e.g. '{\"cluster\": {\"worker\": "
         "[\"host1:port\", \"host2:port\"]}, \"task\": {\"type\": \"worker\", "
         "\"index\": 0}}' (docs/distributed_training.md: Training on N "
         "machines).")
  if not raw:
    raise TrainError("--strategy=multiworker needs TF_CONFIG; " + fix)
  try:
    config = json.loads(raw)
    cluster, task = config["cluster"], config["task"]
    kind, index = task["type"], int(task["index"])
    chiefs = list(cluster.get("chief", []))
    workers = list(cluster.get("worker", []))
  except (ValueError, KeyError, TypeError, AttributeError) as e:
    raise TrainError(f"TF_CONFIG is not valid ({type(e).__name__}: {e}); "
                     + fix) from None
  tasks = {"chief": chiefs, "worker": workers}
  if kind not in tasks or not 0 <= index < len(tasks[kind]):
    raise TrainError(f"TF_CONFIG task {kind!r} {index} is not in its "
                     f"cluster (chief: {len(chiefs)}, worker: "
                     f"{len(workers)}); " + fix)
  if len(chiefs) > 1:
    raise TrainError(f"TF_CONFIG names {len(chiefs)} chiefs; at most one.")
  position = index + (len(chiefs) if kind == "worker" else 0)
  return Worker(index=position, count=len(chiefs) + len(workers),
                chief=position == 0)


def save_dir(checkpoint_dir, worker):
  """Where `worker` writes its checkpoint saves: the run directory for the
  chief; for the others a directory in the system's temp dir (TMPDIR) named
  for the worker and the run, so a restarted worker finds and deletes what
  a killed one left, and a shared --checkpoint_dir never sees it."""
  if worker.chief:
    return checkpoint_dir
  run = hashlib.sha1(os.path.abspath(checkpoint_dir).encode()).hexdigest()
  return os.path.join(tempfile.gettempdir(),
                      f"mobilenet_v2_workertemp_{worker.index}_{run[:12]}")


def discard(checkpoint_dir, worker):
  """Deletes a non-chief's save directory."""
  if not worker.chief:
    shutil.rmtree(save_dir(checkpoint_dir, worker), ignore_errors=True)


def broadcast_from_chief(strategy, variables, worker):
  """Every worker's `variables` := the chief's values (exactly: the chief's
  value plus zeros).  Called by all workers at the same point."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  seen, unique = set(), []
  for v in variables:
    if not isinstance(v, tf.Variable):
      v = v.value  # a Keras variable wraps the tf one
    if id(v) not in seen:
      seen.add(id(v))
      unique.append(v)
  # One float64 vector (exact for float32 values and for step counters
  # below 2**53): a single all-reduce, whatever the variables' dtypes.
  sizes = [v.shape.num_elements() for v in unique]

  def replica():
    if worker.chief:
      flat = tf.concat([tf.reshape(tf.cast(v, tf.float64), [-1])
                        for v in unique], 0)
    else:
      flat = tf.zeros([sum(sizes)], tf.float64)
    return tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, flat)

  @tf.function
  def sync():
    flat = strategy.experimental_local_results(strategy.run(replica))[0]
    for v, value in zip(unique, tf.split(flat, sizes)):
      v.assign(tf.reshape(tf.cast(value, v.dtype), v.shape))

  sync()


def peer_errors():
  """The errors with which a step or a collective reports a lost peer."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  e = tf.errors
  return (e.UnavailableError, e.AbortedError, e.DeadlineExceededError,
          e.CancelledError, e.FailedPreconditionError, e.InternalError)


def run_restarting(train, worker):
  """train(); on a lost peer, one line on stderr and a fresh process (see
  the module doc), or RESTART_EXIT_CODE after MAX_RESTARTS."""
  try:
    return train()
  except peer_errors() as e:
    lines = str(e).strip().splitlines() or [type(e).__name__]
    cause = f"{type(e).__name__}: {lines[0][:200]}"
  if stopping:
    sys.stderr.write(f"{worker.name}: stopped by a signal; the cluster went "
                     f"with it ({cause}).\n")
    return 130
  restarts = int(os.environ.get(_RESTARTS_ENV, "0"))
  if restarts >= MAX_RESTARTS:
    sys.stderr.write(f"error: {worker.name}: lost the cluster ({cause}) "
                     f"after {restarts} restarts; exiting with "
                     f"{RESTART_EXIT_CODE} for the scheduler to restart "
                     "this worker.\n")
    sys.stderr.flush()
    return RESTART_EXIT_CODE
  sys.stderr.write(f"{worker.name}: lost the cluster ({cause}); restarting "
                   f"({restarts + 1}/{MAX_RESTARTS}) to resume from the last "
                   "checkpoint when every worker is back.\n")
  sys.stdout.flush()
  sys.stderr.flush()
  os.environ[_RESTARTS_ENV] = str(restarts + 1)
  os.execv(sys.executable, sys.orig_argv)
  return RESTART_EXIT_CODE  # not reached
