"""Runs .tflite classifiers in TensorFlow Lite for Microcontrollers (TFLM).

The `tflite-micro` package is TFLM's own Python binding: the C++
MicroInterpreter, its memory planner and its reference kernels, the code a
microcontroller build compiles.  `MicroModel` wraps it with the interface of
LiteRT's `runtime.Model`; `measure_arena` finds the smallest tensor arena TFLM
builds and runs the model in.  Both first try the model in a child process:
some models make TFLM abort() without a word, which must not take a tool
down with it.
"""

import contextlib
import dataclasses
import importlib.metadata
import json
import os
import re
import signal
import subprocess
import sys
import tempfile

import numpy as np

from mobilenet.tflite import runtime

# The arena handed to TFLM while measuring: far above any microcontroller's
# RAM, so "does not fit" here means the model is no MCU model at all.
MEASURING_ARENA_BYTES = 64 << 20
# TFLM aligns arena allocations (and expects the model data) to 16 bytes.
ALIGNMENT = 16


class MicroRuntimeError(runtime.ModelFileError):
  """TFLM is missing, or cannot load or run the model; one clear line."""


def tflm():
  """TFLM's Python runtime module, imported on first use so that tools
  which never run TFLM work without the package."""
  try:
    from tflite_micro import runtime as tflm_runtime  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise MicroRuntimeError(
        "TensorFlow Lite Micro is not installed; `pip install tflite-micro` "
        "(Bazel targets get it from the lock)") from None
  return tflm_runtime


def version():
  try:
    return importlib.metadata.version("tflite-micro")
  except importlib.metadata.PackageNotFoundError:
    return None


def read_flatbuffer(data):
  """The model as TFLM's own schema objects (tflite::ModelT in Python)."""
  return tflm().convert_bytearray_to_object(bytearray(data))


@contextlib.contextmanager
def tflm_stderr():
  """Captures what TFLM's C++ writes to file descriptor 2 (MicroPrintf).

  Yields a list that holds the captured lines when the block ends.  Keeps
  TFLM's diagnostics out of a tool's one-line error and lets us read its
  allocation report.
  """
  lines = []
  with tempfile.TemporaryFile(mode="w+b") as tmp:
    saved = os.dup(2)
    try:
      os.dup2(tmp.fileno(), 2)
      yield lines
    finally:
      os.dup2(saved, 2)
      os.close(saved)
      tmp.seek(0)
      lines.extend(tmp.read().decode("utf-8", "replace").splitlines())


def _first_message(lines, default):
  for line in lines:
    line = line.strip()
    if line and not line.startswith("[RecordingMicroAllocator]"):
      return line
  return default


def _quant(details):
  q = details["quantization_parameters"]
  scales, zero_points = q["scales"], q["zero_points"]
  if len(scales) != 1:  # none, or per-axis: not a per-tensor I/O scale
    return 0.0, 0
  return float(scales[0]), int(zero_points[0])


@dataclasses.dataclass(frozen=True)
class ArenaUsage:
  """Tensor arena bytes of one model in TFLM."""
  minimum: int  # the smallest arena TFLM builds and runs the model in
  head: int     # non-persistent: activations, laid out by the memory planner
  tail: int     # persistent: tensor structs, kernel data, quantization params


_REPORT = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")


def parse_allocations(lines):
  """{"total", "head", "tail"} bytes from TFLM's RecordingMicroAllocator."""
  found = {}
  for line in lines:
    m = _REPORT.search(line)
    if m:
      found[m.group(1)] = int(m.group(2))
  if set(found) != {"total", "head", "tail"}:
    raise MicroRuntimeError("TFLite Micro printed no arena allocation report "
                            "(is this tflite-micro build too old or too new?)")
  return found


class MicroModel(runtime.Classifier):
  """One .tflite classifier (path or bytes) run by the TFLM interpreter.

  `arena_size` is the tensor arena in bytes (default: a measuring-size
  arena).  TFLM allocates every tensor when the interpreter is built, so a
  model that does not fit fails here, not at the first invoke.
  """

  def __init__(self, model, arena_size=None, isolate=True, name=None):
    if isinstance(model, (bytes, bytearray)):
      self.path = None
      data = bytes(model)
      runtime.check_model_bytes(data)
    else:
      self.path = os.fspath(model)
      data = runtime.read_model(self.path)
    self.num_bytes = len(data)
    self.arena_size = arena_size or MEASURING_ARENA_BYTES
    name = name or self.path or "<bytes>"
    self.name = name
    graph = read_flatbuffer(data).subgraphs[0]
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
      raise MicroRuntimeError(f"{name}: expected one input and one output, "
                              f"got {len(graph.inputs)} and "
                              f"{len(graph.outputs)}")
    if isolate:
      _isolated("load", data, name, self.arena_size)
    module = tflm()
    with tflm_stderr() as log:
      try:
        self.interpreter = module.Interpreter.from_bytes(
            data, arena_size=self.arena_size)
      except (RuntimeError, ValueError) as e:
        failure = e
      else:
        failure = None
    if failure is not None:
      raise MicroRuntimeError(
          f"{name}: TFLite Micro cannot load the model in a "
          f"{self.arena_size:,}-byte arena ("
          f"{_first_message(log, str(failure).splitlines()[0])})")
    inp = self.interpreter.get_input_details(0)
    out = self.interpreter.get_output_details(0)
    self._set_io(name, inp["shape"], inp["dtype"], _quant(inp), out["shape"],
                 out["dtype"], _quant(out))

  def _invoke(self, batch):
    self.interpreter.set_input(batch.astype(self.input_dtype, copy=False), 0)
    with tflm_stderr() as log:
      try:
        self.interpreter.invoke()
      except RuntimeError as e:
        failure = e
      else:
        failure = None
    if failure is not None:
      raise MicroRuntimeError(
          f"{self.name}: TFLite Micro failed to run the model ("
          f"{_first_message(log, str(failure).splitlines()[0])})")
    return self.interpreter.get_output(0)

  def zero_input(self):
    """One input at the input's zero point (real value 0), for a test run."""
    _, zp = self.input_quant
    return np.full(self.input_shape, zp, self.input_dtype)

  def allocations(self):
    """What TFLM's recording allocator counted (call after an invoke)."""
    with tflm_stderr() as log:
      self.interpreter.print_allocations()
    return parse_allocations(log)


def _builds(data, arena_size):
  """Whether TFLM builds the model in `arena_size` bytes, tried in a forked
  copy of this process: in some too-small arenas TFLM crashes (SIGSEGV)
  instead of failing (seen with STRIDED_SLICE and PAD in patched models),
  which means "does not build" too."""
  pid = os.fork()
  if pid == 0:  # pragma: no cover - the forked child
    try:
      MicroModel(data, arena_size=arena_size, isolate=False)
      code = 0
    except BaseException:  # pylint: disable=broad-except
      code = 1
    os._exit(code)  # pylint: disable=protected-access
  _, status = os.waitpid(pid, 0)
  return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def measure_arena(data, name=None):
  """The tensor arena `data` needs in TFLM: ArenaUsage.

  TFLM's allocation report (head + tail after initialisation) is only a
  starting point: kernels also take temporary memory while they prepare,
  which can need more (520 bytes more for alpha 0.35 at 32 px).  So the
  minimum is searched: TFLM allocates everything when the interpreter is
  built, and a larger arena never fails where a smaller one works, so
  bisection over "does it build" finds the smallest arena; the model is
  then run in exactly that arena.  Raises MicroRuntimeError when TFLM
  cannot run the model at all.
  """
  return ArenaUsage(**_isolated("measure", data, name or "<bytes>"))


def _measure(data):
  """measure_arena's work, in the child process."""
  model = MicroModel(data, isolate=False)
  model.run_raw(model.zero_input())
  report = model.allocations()
  del model
  # Bracket the minimum near the report, widening by doubling steps.
  lo, hi, step = None, report["total"], ALIGNMENT
  while not _builds(data, hi):
    lo, hi, step = hi, hi + step, step * 2
    if hi > MEASURING_ARENA_BYTES:
      raise MicroRuntimeError("TFLite Micro builds the model in no arena "
                              "under its measuring size")
  if lo is None:
    # The persistent part alone leaves no room for activations: a floor
    # that fails.
    floor = report["tail"]
    lo, step = hi - ALIGNMENT, ALIGNMENT
    while lo > floor and _builds(data, lo):
      hi, lo, step = lo, lo - step, step * 2
    lo = max(lo, floor)
  while hi - lo > 1:
    mid = (lo + hi) // 2
    lo, hi = (lo, mid) if _builds(data, mid) else (mid, hi)
  exact = MicroModel(data, arena_size=hi, isolate=False)
  exact.run_raw(exact.zero_input())
  return {"minimum": hi, "head": report["head"], "tail": report["tail"]}


# ---- TFLM in a child process ------------------------------------------------

_CHILD = ("import sys; from mobilenet.tflite import micro_runtime; "
          "micro_runtime.child_main(sys.argv[1:])")


def child_main(argv):
  """The child process: `load|measure MODEL ARENA NAME`; one JSON line."""
  op, path, arena, name = argv
  with open(path, "rb") as f:
    data = f.read()
  try:
    if op == "measure":
      out = _measure(data)
    else:
      model = MicroModel(data, arena_size=int(arena), isolate=False,
                         name=name)
      model.run_raw(model.zero_input())
      out = {}
  except MicroRuntimeError as e:
    out = {"error": str(e)}
  sys.stdout.write(json.dumps(out) + "\n")


def _isolated(op, data, name, arena_size=0):
  """Runs `op` on the model in a separate Python: TFLM's kernels abort() on
  some models (an internal check failing, e.g. on the near-zero quantization
  scales of untrained weights), which would end this process silently."""
  with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "model.tflite")
    with open(path, "wb") as f:
      f.write(data)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path
                                                      if p))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, op, path, str(arena_size), name],
        capture_output=True, text=True, env=env, check=False)
  if proc.returncode < 0:
    sig = signal.Signals(-proc.returncode).name
    why = (" (an internal check in one of its kernels failed, e.g. on the "
           "near-zero quantization scales of untrained weights)"
           if sig == "SIGABRT" else "")
    raise MicroRuntimeError(f"{name}: TFLite Micro died of {sig} loading the "
                            f"model, without a message{why}")
  try:
    out = json.loads(proc.stdout.strip().splitlines()[-1])
  except (ValueError, IndexError):
    raise MicroRuntimeError(
        f"{name}: the TFLite Micro process failed ("
        f"{_first_message(proc.stderr.splitlines()[-1:], 'no output')})"
        ) from None
  if "error" in out:
    raise MicroRuntimeError(out["error"])
  return out
