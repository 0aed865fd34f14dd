"""--patches=auto|off|RxC[@LAYER][,RxC@LAYER...]: which stages and grids to
patch, chosen by the tensor arena TFLM itself needs.

More patches shrink the activations of a stage but cost persistent arena
(TFLM keeps 8 bytes per output channel of every conv instance) and MACs
(halos), and a later cut patches more of the network but keeps a bigger
reassembled tensor: no formula ranks them, so every candidate is loaded in
the TFLM interpreter for its allocation report, and the best few are
measured exactly (micro_runtime.measure_arena: the smallest arena that
builds and runs).  auto first tries one stage (R, C in AUTO_SPLITS, on the
first blocks), then a second stage after the best one: once the first
blocks run in patches, the next block's whole-image activations are often
the peak.
"""

import dataclasses

from mobilenet.tflite import exact_graph
from mobilenet.tflite import micro_runtime
from mobilenet.tflite import patch_grid
from mobilenet.tflite import patch_stage
from mobilenet.tflite import patches

GridError = patch_grid.GridError
# auto's grids: R and C from these (where they divide), on block outputs at
# most 8x smaller than the image: later cuts patch layers that are small
# already and multiply the persistent cost (every measurement said so).
AUTO_SPLITS = (1, 2, 4, 8)
AUTO_MAX_STRIDE = 8
# Candidates measured exactly (bisection in TFLM) after ranking all by
# TFLM's allocation report, which can miss kernels' temporary memory.
FINALISTS = 3


@dataclasses.dataclass(frozen=True)
class Choice:
  stages: tuple  # ((rows, cols, layer), ...)
  tflite: bytes
  arena: micro_runtime.ArenaUsage
  searched: int  # candidates loaded in TFLM

  @property
  def spec(self):
    return ",".join(f"{r}x{c}@{layer}" for r, c, layer in self.stages)


def parse(spec):
  """None for "off", "auto", or [(rows, cols, layer or None)]; GridError.
  Only a single stage may leave its block out (it is searched); an empty
  spec is an error, not "off"."""
  spec = "off" if spec is None else spec.strip()
  if spec in ("off", "auto"):
    return None if spec == "off" else "auto"
  stages = []
  for part in spec.split(","):
    grid, at, layer = part.partition("@")
    rows, cols = patch_grid.parse_grid(grid, spec)
    if (at and not layer) or ("," in spec and not layer):
      raise GridError(f"--patches={spec}: name the block after @ (e.g. "
                      f"{grid}@block_2); only a single stage may leave @ out "
                      "to have its block searched")
    stages.append((rows, cols, layer or None))
  return stages


def _auto_stage(cuts, height, after=None):
  return [(r, c, cut.layer) for cut in cuts
          if cut.height * AUTO_MAX_STRIDE >= height and (
              after is None or cut.last_op > after.last_op)
          for r, c in patch_grid.grids(cut.height, cut.width)
          if r in AUTO_SPLITS and c in AUTO_SPLITS]


def candidates(tflite, parsed):
  """[stages] to try for a parsed spec other than auto."""
  graph = exact_graph.read_graph(tflite)
  cuts = patch_stage.cuts(graph)
  if len(parsed) > 1 or parsed[0][2]:
    return [parsed]
  rows, cols, _ = parsed[0]
  fits = [[(rows, cols, c.layer)] for c in cuts
          if (rows, cols) in patch_grid.grids(c.height, c.width)]
  if not fits:
    raise GridError(f"--patches={rows}x{cols}: no block output is divided by"
                    f" a {rows}x{cols} grid; block outputs are " + ", ".join(
                        f"{c.layer} {c.height}x{c.width}" for c in cuts))
  return fits


def _reported_total(data):
  # In this process: the unpatched model, same kernels and quantization,
  # has been run in TFLM (isolated) already.
  model = micro_runtime.MicroModel(data, isolate=False)
  model.run_raw(model.zero_input())
  return model.allocations()["total"]


def _ranked(tflite, tries, log):
  """[(TFLM's reported total, n, stages, bytes)] of `tries` (lists of
  stages), smallest first."""
  ranked = []
  for n, stages in enumerate(tries):
    data = patches.patch(tflite, stages)
    ranked.append((_reported_total(data), n, stages, data))
    if log:
      log(f"patches {Choice(tuple(stages), b'', None, 0).spec}: TFLM "
          f"reports {ranked[-1][0]:,} bytes")
  return sorted(ranked, key=lambda t: t[:2])


def _best(ranked, name):
  """The Choice with the smallest arena measured by bisection among the
  first FINALISTS of `ranked`."""
  measured = []
  for _, n, stages, data in ranked[:FINALISTS]:
    arena = micro_runtime.measure_arena(data, name=name)
    measured.append((arena.minimum, n, Choice(tuple(stages), data, arena,
                                               len(ranked))))
  return min(measured, key=lambda m: m[:2])[2]


def search(tflite, spec, name="<bytes>", log=None):
  """The Choice for `spec`, or None for "off"; GridError for a bad one."""
  parsed = parse(spec)
  if parsed is None:
    return None
  if parsed != "auto":
    return _best(_ranked(tflite, candidates(tflite, parsed), log), name)
  graph = exact_graph.read_graph(tflite)
  cuts = patch_stage.cuts(graph)
  by_name = {c.layer: c for c in cuts}
  height = graph.tensors[graph.inputs[0]].shape[1]
  ranked = _ranked(tflite, [[s] for s in _auto_stage(cuts, height)], log)
  first = _best(ranked, name)
  # A second stage after each of the first stages TFLM ranks best (the best
  # pair need not start with the best single stage).
  seconds = [list(stages) + [s] for _, _, stages, _ in ranked[:FINALISTS]
             for s in _auto_stage(cuts, height, by_name[stages[-1][2]])]
  if not seconds:
    return first
  second = _best(_ranked(tflite, seconds, log), name)
  best = second if second.arena.minimum < first.arena.minimum else first
  return dataclasses.replace(best, searched=first.searched + second.searched)
