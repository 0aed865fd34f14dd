"""--patches=auto|off|RxC[@LAYER]: which stage and grid to patch, chosen by
the tensor arena TFLM itself needs.

More patches shrink the activations of the stage but cost persistent arena
(TFLM keeps 8 bytes per output channel of every conv instance) and MACs
(halos), and a later cut patches more of the network but keeps a bigger
reassembled tensor: no formula ranks them, so every candidate (square grids
R, C in AUTO_SPLITS on the first blocks, or the blocks for a given grid) is
loaded in the TFLM interpreter for its allocation report, and the best few
are measured exactly (micro_runtime.measure_arena: the smallest arena that
builds and runs).
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
  rows: int
  cols: int
  layer: str
  tflite: bytes
  arena: micro_runtime.ArenaUsage
  searched: int  # candidates loaded in TFLM

  @property
  def grid(self):
    return f"{self.rows}x{self.cols}"


def parse(spec):
  """None for "off", "auto", or (rows, cols, layer or None); GridError."""
  spec = (spec or "off").strip()
  if spec in ("off", "auto"):
    return None if spec == "off" else "auto"
  grid, _, layer = spec.partition("@")
  rows, cols = patch_grid.parse_grid(grid)
  if "@" in spec and not layer:
    raise GridError(f"--patches={spec}: name the block after @ (e.g. "
                    f"{grid}@block_2) or leave @ out to search the stage")
  return rows, cols, layer or None


def candidates(tflite, parsed):
  """[(rows, cols, layer)] to try for a parsed spec (not "off")."""
  graph = exact_graph.read_graph(tflite)
  cuts = patch_stage.cuts(graph)
  if parsed == "auto":
    height = graph.tensors[graph.inputs[0]].shape[1]
    return [(r, c, cut.layer) for cut in cuts
            if cut.height * AUTO_MAX_STRIDE >= height
            for r, c in patch_grid.grids(cut.height, cut.width)
            if r in AUTO_SPLITS and c in AUTO_SPLITS]
  rows, cols, layer = parsed
  if layer:
    cut = patch_stage.find_cut(graph, layer)
    patch_grid.check_grid(rows, cols, layer, cut.height, cut.width)
    return [(rows, cols, layer)]
  fits = [(rows, cols, c.layer) for c in cuts
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


def search(tflite, spec, name="<bytes>", log=None):
  """The Choice for `spec`, or None for "off"; GridError for a bad one."""
  parsed = parse(spec)
  if parsed is None:
    return None
  tried = []
  for n, (rows, cols, layer) in enumerate(candidates(tflite, parsed)):
    data = patches.patch(tflite, rows, cols, layer)
    tried.append((_reported_total(data), n, rows, cols, layer, data))
    if log:
      log(f"patches {rows}x{cols}@{layer}: TFLM reports {tried[-1][0]:,} "
          "bytes")
  tried.sort(key=lambda t: t[:2])
  measured = []
  for _, n, rows, cols, layer, data in tried[:FINALISTS]:
    arena = micro_runtime.measure_arena(data, name=name)
    measured.append((arena.minimum, n, Choice(rows, cols, layer, data, arena,
                                               len(tried))))
  return min(measured, key=lambda m: m[:2])[2]
