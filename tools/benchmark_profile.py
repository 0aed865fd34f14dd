"""--profile: TF op time by op type, ours vs Keras (tf.profiler traces)."""

import glob
import os
import tempfile

from tools import benchmark_harness as harness
from tools import benchmark_measures as measures

CALLS = 10
_RUNTIME_EVENTS = ("Eager", "KernelAndDevice", "ThreadpoolListener",
                   "ExecutorState")


def tf_op_profile(cfg, source, kmodel, batch, rng):
  """{"ours"|"keras": {op type: ms per call}} over CALLS traced calls."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  ours, keras_fn, x = measures.tf_float_pair(cfg, source, kmodel, batch, rng)
  result = {}
  for name, fn in (("ours", ours.get_concrete_function()),
                   ("keras", keras_fn)):
    for _ in range(3):
      fn(x)
    with tempfile.TemporaryDirectory(prefix=f"tfprof_{name}_") as logdir:
      tf.profiler.experimental.start(logdir)
      for _ in range(CALLS):
        harness.sync(fn(x))
      tf.profiler.experimental.stop()
      result[name] = _op_times(logdir, CALLS)
  return result


def _op_times(logdir, calls):
  """{op type: ms per call} from the profiler's XSpace (*.xplane.pb)."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  totals = {}
  for path in glob.glob(os.path.join(logdir, "**", "*.xplane.pb"),
                        recursive=True):
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
      space.ParseFromString(f.read())
    for plane in space.planes:
      if plane.name != "/host:CPU":
        continue
      meta = plane.event_metadata
      for line in plane.lines:
        for ev in line.events:
          name = meta[ev.metadata_id].name
          # Kernel events are "node:OpType"; runtime events have no colon
          # or name the executor / function.
          if ":" not in name or name.startswith(_RUNTIME_EVENTS):
            continue
          op = name.rsplit(":", 1)[-1].strip()
          if op.startswith("__inference"):
            continue
          totals[op] = totals.get(op, 0.0) + ev.duration_ps / 1e9 / calls
  return dict(sorted(totals.items(), key=lambda kv: -kv[1]))
