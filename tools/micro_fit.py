r"""Which MobileNetV2 fits a microcontroller: arena and flash measured in TFLM.

  tools/bazel run //tools:micro_fit -- --ram_kib=512 --flash_kib=2048
  tools/bazel run //tools:micro_fit -- --ram_kib=256 --flash_kib=1024 \
      --channels=1 --classes=10 --save_to=fit/
  tools/bazel run //tools:micro_fit -- --ram_kib=320 --flash_kib=1024 \
      --from_json=data/docs/micro_fit.json      # re-mark, no re-measuring

For every alpha in --alphas and input size in --sizes: a random-weight model
(BN statistics from real digits, so int8 calibration sees live activations;
sizes do not depend on the weights' values) goes through the same path as
`convert --target=micro`: int8 conversion, the micro check, the tensor arena
measured in the TFLM interpreter.  A model fits when its recommended arena
(measured + headroom) fits --ram_kib and its model data fits --flash_kib;
the largest fitting model (most MACs) is marked.  Prints the Markdown table;
--save_to writes micro_fit.md, micro_fit.json and micro_fit.png.
--patches=auto (or RxC[@LAYER]) measures each model patched as `convert
--patches` builds it and marks fits by the patched arena; the table adds the
unpatched arena, the grid and the MAC overhead.
"""

import json
import math
import os
import sys
import time

from mobilenet.core import cli  # first: quiets TensorFlow's start-up logs

from absl import flags  # pylint: disable=g-bad-import-order
from absl import logging
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
from matplotlib import ticker  # pylint: disable=g-import-not-at-top,wrong-import-position

from mobilenet.core import arch  # pylint: disable=g-bad-import-order,wrong-import-position
from mobilenet.tflite import converter  # pylint: disable=wrong-import-position
from mobilenet.tflite import micro_export  # pylint: disable=wrong-import-position
from mobilenet.tflite import micro_runtime  # pylint: disable=wrong-import-position
from mobilenet.tflite import patch_search  # pylint: disable=wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_float("ram_kib", None, "RAM budget for the tensor arena, KiB.")
flags.DEFINE_float("flash_kib", None, "Flash budget for the model data, KiB.")
flags.DEFINE_integer("channels", 3, "Input channels (1 or 3).")
flags.DEFINE_integer("classes", 1000, "Output classes.", lower_bound=2)
flags.DEFINE_list("alphas", ["0.35", "0.5", "0.75", "1.0"], "Width "
                  "multipliers.")
flags.DEFINE_list("sizes", ["96", "128", "160", "192", "224"], "Input sizes "
                  "(height = width, >= 32).")
flags.DEFINE_integer("num_calibration", 10, "Calibration digits per model "
                     "(the sizes do not depend on them).", lower_bound=1)
flags.DEFINE_string("from_json", None, "micro_fit.json of an earlier run: "
                    "mark its measurements for this budget, measure nothing.")
flags.DEFINE_string("save_to", None, "Directory for micro_fit.md/.json/.png.")
flags.DEFINE_string("patches", "off", "off | auto | RxC[@LAYER]: measure the "
                    "models as convert --target=micro --patches builds them.")
flags.mark_flag_as_required("ram_kib")
flags.mark_flag_as_required("flash_kib")

KIB = 1024


def _patch_fields(micro):
  """The row's patch columns from the sidecar's micro.patches."""
  p = micro["patches"]
  if not p["spec"]:  # auto kept the model unpatched
    return {"patches": "none", "unpatched_arena_bytes": micro["arena_bytes"],
            "mac_overhead": 0.0}
  return {"patches": p["spec"],
          "unpatched_arena_bytes": p["unpatched"]["arena_bytes"],
          "mac_overhead": p["mac_overhead"]}


def measure(alpha, size, channels, classes, num_calibration, patches="off"):
  """One row: the micro build of a random model, measured."""
  # TensorFlow loads here: re-marking (--from_json) and bad flags stay quick.
  from mobilenet.testing import models  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  source = models.live_random_source(alpha, size, channels=channels,
                                     classes=classes)
  converted = converter.convert_source(source, "int8",
                                       num_calibration=num_calibration)
  micro = micro_export.for_micro(converted, patches).metadata["micro"]
  net = arch.derive(alpha, channels, classes)
  extra = _patch_fields(micro) if "patches" in micro else {}
  return {**extra, "alpha": alpha, "size": size,
          "macs": arch.count_macs(net, size, size),
          "params": arch.count_params(net),
          "flash_bytes": micro["flash_bytes"],
          "arena_bytes": micro["arena_bytes"],
          "arena_activation_bytes": micro["arena_activation_bytes"],
          "arena_persistent_bytes": micro["arena_persistent_bytes"],
          "recommended_arena_bytes": micro["recommended_arena_bytes"],
          "seconds": round(time.perf_counter() - start, 1)}


def mark(rows, ram_kib, flash_kib):
  """Rows with fits_ram / fits_flash / fits / best for this budget."""
  out = []
  for r in rows:
    r = dict(r)
    r["fits_ram"] = r["recommended_arena_bytes"] <= ram_kib * KIB
    r["fits_flash"] = r["flash_bytes"] <= flash_kib * KIB
    r["fits"] = r["fits_ram"] and r["fits_flash"]
    r["best"] = False
    out.append(r)
  fitting = [r for r in out if r["fits"]]
  if fitting:
    max(fitting, key=lambda r: (r["macs"], r["alpha"]))["best"] = True
  return out


def _kib(n):
  return f"{n / KIB:,.0f}"


def markdown(rows, settings):
  s = settings
  lines = [
      f"# MobileNetV2 on a microcontroller: {s['ram_kib']:g} KiB RAM, "
      f"{s['flash_kib']:g} KiB flash", "",
      f"{s['channels']}-channel input, {s['classes']} classes, int8, batch 1; "
      f"arena measured in the TFLM interpreter ({s['measured_with']}). "
      "A model fits when its recommended arena (measured + "
      f"{int(s['arena_headroom'] * 100)} %, rounded up to 1 KiB) fits the "
      "RAM and its model data fits the flash (the TFLM library's own code "
      "comes on top). **Bold**: the largest model "
      "(most MACs) that fits.", "",
      "| alpha | input | MMACs | params | flash KiB | arena KiB | "
      "activations KiB | persistent KiB | recommended KiB | fits |",
      "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  patched = any("patches" in r for r in rows)
  if patched:
    lines[-4] += (" Patched (`--patches`): arena, activations, persistent and "
                  "recommended are the patched build's.")
    lines[-2] = lines[-2][:-len(" fits |")] + (
        " unpatched arena KiB | patches | MAC overhead | fits |")
    lines[-1] += " --- | --- | --- |"
  for r in rows:
    fit = "yes" if r["fits"] else "no (" + ", ".join(
        w for w, ok in (("RAM", r["fits_ram"]), ("flash", r["fits_flash"]))
        if not ok) + ")"
    cells = [f"{r['alpha']:g}", f"{r['size']}x{r['size']}",
             f"{r['macs'] / 1e6:,.1f}", f"{r['params']:,}",
             _kib(r["flash_bytes"]), _kib(r["arena_bytes"]),
             _kib(r["arena_activation_bytes"]),
             _kib(r["arena_persistent_bytes"]),
             _kib(r["recommended_arena_bytes"]), fit]
    if patched:
      cells[-1:-1] = [_kib(r["unpatched_arena_bytes"]), r["patches"],
                      f"+{r['mac_overhead'] * 100:.1f} %"]
    if r["best"]:
      cells = [f"**{c}**" for c in cells]
    lines.append("| " + " | ".join(cells) + " |")
  best = [r for r in rows if r["best"]]
  lines += ["", (f"Largest that fits: alpha {best[0]['alpha']:g} at "
                 f"{best[0]['size']} px ({best[0]['macs'] / 1e6:,.1f} MMACs)."
                 if best else "No configuration fits this budget.")]
  return "\n".join(lines) + "\n"


def _frac(ax, y):
  """Axes fraction of data value y on a log y axis (clipped to [0, 1])."""
  lo, hi = (math.log(v) for v in ax.get_ylim())
  return min(1.0, max(0.0, (math.log(y) - lo) / (hi - lo)))


def _ticks(limits):
  """Round ticks inside `limits` for a log axis in KiB."""
  out = []
  for e in range(0, 6):
    for m in (1, 1.5, 2, 3, 5, 7):
      if limits[0] <= m * 10 ** e <= limits[1]:
        out.append(m * 10 ** e)
  return out


def plot(rows, settings, path):
  fig, ax = plt.subplots(figsize=(8, 5.5))
  for r in rows:
    color = "tab:green" if r["fits"] else "tab:red"
    x, y = r["recommended_arena_bytes"] / KIB, r["flash_bytes"] / KIB
    ax.scatter([x], [y], s=30 + r["macs"] / 3e6, color=color,
               edgecolors="black" if r["best"] else "none", zorder=3)
    ax.annotate(f"{r['alpha']:g}/{r['size']}", (x, y), fontsize=7,
                xytext=(4, 3), textcoords="offset points")
  ax.set_xscale("log")
  ax.set_yscale("log")
  for lim, key, budget in ((ax.set_xlim, "recommended_arena_bytes", "ram_kib"),
                           (ax.set_ylim, "flash_bytes", "flash_kib")):
    values = [r[key] / KIB for r in rows] + [settings[budget]]
    lim(min(values) / 1.25, max(values) * 1.25)
  # The budget: everything left of and below the dashed lines fits.
  ax.axvline(settings["ram_kib"], color="gray", ls="--")
  ax.axhline(settings["flash_kib"], color="gray", ls="--")
  ax.axvspan(ax.get_xlim()[0], settings["ram_kib"], ymax=_frac(
      ax, settings["flash_kib"]), color="tab:green", alpha=0.08, lw=0)
  for axis in (ax.xaxis, ax.yaxis):
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    axis.set_minor_formatter(ticker.NullFormatter())
  ax.set_xticks(_ticks(ax.get_xlim()))
  ax.set_yticks(_ticks(ax.get_ylim()))
  ax.set_xlabel("recommended tensor arena, KiB (TFLM, measured + headroom)")
  ax.set_ylabel("model data in flash, KiB")
  ax.set_title(f"MobileNetV2 alpha/input size, {settings['channels']}-ch "
               f"{settings['classes']} classes; budget {settings['ram_kib']:g}"
               f" KiB RAM, {settings['flash_kib']:g} KiB flash (dashed); "
               "green fits", fontsize=9)
  fig.tight_layout()
  tmp = path + ".tmp.png"
  # No Software/date metadata: the same rows give the same bytes.
  fig.savefig(tmp, format="png", dpi=90, metadata={"Software": None})
  plt.close(fig)
  os.replace(tmp, path)


def _parse(values, kind, flag):
  try:
    return [kind(v) for v in values]
  except ValueError:
    raise cli.UsageError(f"{flag}: {values} are not all numbers") from None


def _load(path):
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
    return data["settings"], data["rows"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise cli.UsageError(f"--from_json={path}: not a micro_fit.json ({e})"
                         ) from None


def main(argv):
  logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    raise cli.UsageError(f"unexpected arguments {argv[1:]}; see --help")
  if not FLAGS.ram_kib > 0 or not FLAGS.flash_kib > 0:
    raise cli.UsageError("--ram_kib and --flash_kib must be positive (KiB)")
  if FLAGS.channels not in (1, 3):
    raise cli.UsageError(f"--channels={FLAGS.channels}: use 1 or 3")
  alphas = _parse(FLAGS.alphas, float, "--alphas")
  sizes = _parse(FLAGS.sizes, int, "--sizes")
  for a in alphas:
    arch.validate_alpha(a)
  if any(s < 32 for s in sizes):
    raise cli.UsageError(f"--sizes={FLAGS.sizes}: MobileNetV2 needs >= 32")
  save_to = cli.output_dir(cli.user_path(FLAGS.save_to)) if FLAGS.save_to else None
  patch_search.parse(FLAGS.patches)
  if FLAGS.from_json:
    settings, rows = _load(cli.user_path(FLAGS.from_json))
    for flag in ("channels", "classes"):
      if FLAGS[flag].present and FLAGS[flag].value != settings[flag]:
        raise cli.UsageError(
            f"--{flag}={FLAGS[flag].value} but {FLAGS.from_json} measured "
            f"{settings[flag]}; drop --from_json to measure anew")
  else:
    micro_runtime.tflm()  # not installed: say so before the slow part
    settings = {"channels": FLAGS.channels, "classes": FLAGS.classes,
                "num_calibration": FLAGS.num_calibration,
                **({"patches": FLAGS.patches} if FLAGS.patches != "off"
                   else {}),
                "arena_headroom": micro_export.ARENA_HEADROOM,
                "measured_with": f"tflite-micro {micro_runtime.version()}"}
    rows = []
    for a in alphas:
      for s in sizes:
        rows.append(measure(a, s, FLAGS.channels, FLAGS.classes,
                            FLAGS.num_calibration, FLAGS.patches))
        print(f"measured alpha {a:g} at {s} px in {rows[-1]['seconds']} s",
              file=sys.stderr)
  settings = dict(settings, ram_kib=FLAGS.ram_kib, flash_kib=FLAGS.flash_kib)
  rows = mark(rows, FLAGS.ram_kib, FLAGS.flash_kib)
  md = markdown(rows, settings)
  if save_to:
    cli.atomic_write(os.path.join(save_to, "micro_fit.md"), md)
    cli.atomic_write(os.path.join(save_to, "micro_fit.json"), json.dumps(
        {"settings": settings, "rows": rows}, indent=1) + "\n")
    plot(rows, settings, os.path.join(save_to, "micro_fit.png"))
  print(md)


if __name__ == "__main__":
  cli.run(main)
