r"""Speed of this MobileNetV2 against keras.applications + the stock converter.

  tools/bazel run //tools:benchmark -- [--quick] [--out_dir data/benchmark]

Every figure is a RATIO of two medians measured in this one process, with
the two sides interleaved round by round so machine load hits both alike
(absolute times on a shared 2-core machine are noise; the ratios are the
result).  Both sides get the same weights: a Keras-style random init whose BN
statistics come from real digits (so activations, and int8 calibration, look
like a trained net's), copied into keras.applications.MobileNetV2.

  P1  TF float latency, batch 1: ours (forward.build, BN folded) / Keras
  P2  TF float throughput, large batch: ours / Keras
  P3  LiteRT latency (1 and 2 threads), our int8 / stock-converter int8;
      also float32 and float16, ours / stock
  P4  int8 .tflite size (MB, 10^6 bytes)
  P5  int8 conversion wall time: ours / TFLiteConverter.from_keras_model
  P6  training throughput: our custom-loop train step / Keras fit()

Writes benchmark.md, benchmark.json and benchmark.png into --out_dir
(temp files + rename: nothing partial) and prints the table.
"""

import contextlib
import dataclasses
import datetime
import importlib.metadata
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time

from mobilenet.tflite import cli  # first: quiets TF/LiteRT start-up logs

from absl import app  # pylint: disable=g-bad-import-order
from absl import flags
from absl import logging
import numpy as np

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "Small configuration (alpha 0.35, 96 px, "
                  "fewer repeats) that finishes in a minute or two.")
flags.DEFINE_string("out_dir", "data/benchmark", "Where benchmark.md/.json/.png "
                    "go (relative to your shell under bazel run).")
flags.DEFINE_list("only", [], "Run a subset, e.g. --only=P1,P3 (default: all).")
flags.DEFINE_integer("seed", 0, "Seed of the random weights and inputs.")
flags.DEFINE_bool("profile", False, "Also time TF ops by type at the P1 and "
                  "P2 batch sizes (tf.profiler); recorded in the JSON.")

METRICS = ("P1", "P2", "P3", "P4", "P5", "P6")
KERAS_BASELINE = ("keras.applications.MobileNetV2 called inside a tf.function "
                  "(model(x, training=False)), fixed input signature, no XLA")


@dataclasses.dataclass(frozen=True)
class Config:
  name: str
  alpha: float
  size: int
  throughput_batch: int
  train_batch: int
  train_steps: int        # steps per timed fit()/loop run
  latency_rounds: int
  latency_calls: int      # calls per round (one timing = their mean)
  throughput_rounds: int
  tflite_rounds: int
  tflite_calls: int
  conversion_repeats: int
  train_rounds: int
  warmup: int = 3
  num_calibration: int = 20
  threads: tuple = (1, 2)


FULL = Config("full", alpha=1.0, size=224, throughput_batch=32, train_batch=32,
              train_steps=2, latency_rounds=15, latency_calls=5,
              throughput_rounds=7, tflite_rounds=15, tflite_calls=5,
              conversion_repeats=3, train_rounds=3)
QUICK = Config("quick", alpha=0.35, size=96, throughput_batch=16,
               train_batch=16, train_steps=3, latency_rounds=9,
               latency_calls=5, throughput_rounds=5, tflite_rounds=7,
               tflite_calls=20, conversion_repeats=1, train_rounds=3)


@dataclasses.dataclass
class Metric:
  key: str          # "P1", "P3 int8 1t", ...
  title: str
  ours: float
  reference: float
  unit: str
  value: float      # what the target applies to (a ratio, or MB for P4)
  target: float = None
  higher_is_better: bool = False
  note: str = ""

  @property
  def met(self):
    if self.target is None:
      return None
    return (self.value >= self.target if self.higher_is_better
            else self.value <= self.target)


# ---- timing ---------------------------------------------------------------


def interleaved(fns, rounds, calls=1, warmup=2, label=""):
  """Median seconds per call of each fn in `fns` (name -> callable).

  The fns take turns round by round (in rotating order), so a burst of load
  from another job lands on every side rather than on one.
  """
  for name, fn in fns.items():
    for _ in range(warmup):
      fn()
  samples = {name: [] for name in fns}
  names = list(fns)
  for r in range(rounds):
    for name in names[r % len(names):] + names[:r % len(names)]:
      fn = fns[name]
      start = time.perf_counter()
      for _ in range(calls):
        fn()
      samples[name].append((time.perf_counter() - start) / calls)
  medians = {name: statistics.median(s) for name, s in samples.items()}
  for name, m in medians.items():
    logging.info("%s %s: median %.3f ms over %d rounds x %d calls", label,
                 name, m * 1e3, rounds, calls)
  return medians, samples


# ---- the shared model -------------------------------------------------------


def live_params(alpha, size, seed, num_images=32):
  """Random params whose BN moving stats are batch stats on real digits.

  Keras' init (unit BN stats) shrinks activations towards zero layer by
  layer; int8 calibration of such a net is meaningless.
  """
  from mobilenet.core import arch  # pylint: disable=g-import-not-at-top
  from mobilenet.core import forward
  from mobilenet.core import params as params_lib
  from mobilenet.core import preprocess
  from mobilenet.tflite import converter
  net = arch.derive(alpha, 3, 1000, True)
  params = params_lib.init(net, seed)
  paths = preprocess.find_images(converter.default_calibration_dir())
  images = preprocess.load_images(paths[-num_images:], size, channels=3)
  zeroed = {k: dict(v) for k, v in params.items()}
  for v in zeroed.values():
    if "moving_mean" in v:
      v["moving_mean"] = np.zeros_like(v["moving_mean"])
      v["moving_variance"] = np.zeros_like(v["moving_variance"])
  _, stats = forward.forward(zeroed, images, alpha=alpha, training=True)
  momentum = arch.BN_MOMENTUM
  # Moving stats started at 0, so new = batch * (1 - momentum).
  stats = {name: {k: np.asarray(t) / (1.0 - momentum) for k, t in s.items()}
           for name, s in stats.items()}
  return net, params_lib.with_bn_stats(params, stats)


def keras_reference(params, alpha, size, **kwargs):
  """keras.applications.MobileNetV2 holding `params`."""
  import keras  # pylint: disable=g-import-not-at-top
  model = keras.applications.MobileNetV2(
      input_shape=(size, size, 3), alpha=alpha, weights=None, **kwargs)
  order = ("kernel", "depthwise_kernel", "bias", "gamma", "beta",
           "moving_mean", "moving_variance")
  for layer_name, p in params.items():
    layer = model.get_layer(layer_name)
    layer.set_weights([p[k] for k in sorted(p, key=order.index)])
  return model


def calibration_images(cfg):
  from mobilenet.tflite import converter  # pylint: disable=g-import-not-at-top
  cal = converter.calibration_set(num=cfg.num_calibration)
  return converter.representative_batch(cal, cfg.size, 3, "tf")


def _sync(x):
  return x.numpy() if hasattr(x, "numpy") else x


# ---- P1 / P2: TF float ------------------------------------------------------


def tf_float(cfg, params, kmodel, batch, rounds, calls, label, rng):
  """Median seconds per batch: ours and Keras' ways of running the model."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from mobilenet.core import forward  # pylint: disable=g-import-not-at-top
  ours = forward.build(params, alpha=cfg.alpha,
                       input_shape=(cfg.size, cfg.size, 3), batch_size=batch)
  concrete = ours.get_concrete_function()
  spec = tf.TensorSpec((batch, cfg.size, cfg.size, 3), tf.float32)
  keras_fn = tf.function(lambda x: kmodel(x, training=False),
                         input_signature=[spec], jit_compile=False)
  x = tf.constant(rng.uniform(-1, 1, spec.shape).astype(np.float32))
  err = float(np.max(np.abs(ours(x).numpy() - keras_fn(x).numpy())))
  logging.info("%s: max |ours - keras| = %.2e (same weights)", label, err)
  fns = {
      "ours_concrete": lambda: _sync(concrete(x)),
      "ours_tf_function": lambda: _sync(ours(x)),
      "keras_tf_function": lambda: _sync(keras_fn(x)),
  }
  if batch == 1:  # context: how Keras users often call it
    fns["keras_predict_on_batch"] = lambda: kmodel.predict_on_batch(x)
  medians, _ = interleaved(fns, rounds, calls, cfg.warmup, label)
  if batch == 1:
    # Eager layer-by-layer calls are ~10x slower: a few samples suffice.
    eager, _ = interleaved(
        {"keras_eager_call": lambda: _sync(kmodel(x, training=False))}, 3, 1,
        1, label)
    medians.update(eager)
  return medians, err


def tf_op_profile(cfg, params, kmodel, batch, rng):
  """Per-op-type self time of ours vs Keras (tf.profiler trace, 10 calls)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from mobilenet.core import forward  # pylint: disable=g-import-not-at-top
  ours = forward.build(params, alpha=cfg.alpha,
                       input_shape=(cfg.size, cfg.size, 3), batch_size=batch)
  spec = tf.TensorSpec((batch, cfg.size, cfg.size, 3), tf.float32)
  keras_fn = tf.function(lambda x: kmodel(x, training=False),
                         input_signature=[spec])
  x = tf.constant(rng.uniform(-1, 1, spec.shape).astype(np.float32))
  result = {}
  for name, fn in (("ours", ours.get_concrete_function()),
                   ("keras", keras_fn)):
    for _ in range(3):
      fn(x)
    with tempfile.TemporaryDirectory(prefix=f"tfprof_{name}_") as logdir:
      tf.profiler.experimental.start(logdir)
      for _ in range(10):
        _sync(fn(x))
      tf.profiler.experimental.stop()
      result[name] = _op_times(logdir, 10)
  return result


def _op_times(logdir, calls):
  """{op type: ms per call} from the profiler's XSpace (*.xplane.pb)."""
  import glob  # pylint: disable=g-import-not-at-top
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


_RUNTIME_EVENTS = ("Eager", "KernelAndDevice", "ThreadpoolListener",
                   "ExecutorState")


# ---- P3 / P4 / P5: TFLite ---------------------------------------------------


def convert_ours(cfg, params, quantize, representative):
  from mobilenet.core import forward  # pylint: disable=g-import-not-at-top
  from mobilenet.tflite import converter
  # Timed end to end: build (BN folding) + trace + convert.
  model = forward.build(params, alpha=cfg.alpha,
                        input_shape=(cfg.size, cfg.size, 3))
  return converter.convert(model.get_concrete_function(), quantize,
                           representative, model)


def convert_stock(kmodel, quantize, representative):
  """What a keras.applications user does, with the settings ours uses."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  # Keras prints its temporary SavedModel's whole signature to stdout.
  with contextlib.redirect_stdout(io.StringIO()):
    return _convert_stock(tf, kmodel, quantize, representative)


def _convert_stock(tf, kmodel, quantize, representative):
  conv = tf.lite.TFLiteConverter.from_keras_model(kmodel)
  if quantize != "float":
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
  if quantize == "float16":
    conv.target_spec.supported_types = [tf.float16]
  if quantize == "int8":
    samples = np.asarray(representative, np.float32)
    conv.representative_dataset = lambda: ([s[None]] for s in samples)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
  return conv.convert()


def timed(fn):
  start = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - start


def litert_latency(cfg, models, threads, rng):
  """{model name: median seconds per invoke} at `threads` threads."""
  from mobilenet.tflite import runtime  # pylint: disable=g-import-not-at-top
  fns = {}
  for name, data in models.items():
    m = runtime.Model(data, num_threads=threads)
    inp = m.input
    shape = tuple(int(v) for v in inp["shape"])
    x = m._prepare(rng.uniform(-1, 1, shape).astype(np.float32))  # pylint: disable=protected-access
    m.interpreter.set_tensor(inp["index"], x)
    fns[name] = m.interpreter.invoke
  medians, _ = interleaved(fns, cfg.tflite_rounds, cfg.tflite_calls,
                           cfg.warmup, f"LiteRT {threads}t")
  return medians


# ---- P6: training -----------------------------------------------------------


def our_train_step(cfg, classes, out_tmp):
  """Our custom-loop train step as a callable(batch) -> per-step sums.

  Prefers mobilenet.keras.train_lib's Trainer (its tf.function step); when
  that library is not importable (e.g. not yet a Bazel dep), runs the same
  step on mobilenet.keras.MobileNetV2 here.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from mobilenet.core import labels as labels_lib  # pylint: disable=g-import-not-at-top
  try:
    from mobilenet.keras import train_lib  # pylint: disable=g-import-not-at-top
    tcfg = train_lib.Config(
        data_dir=labels_lib.data_path("mnist_heldout"), alpha=cfg.alpha,
        input_size=cfg.size, channels=3, batch_size=cfg.train_batch,
        optimizer="rmsprop", checkpoint_dir=out_tmp, verbose=0)
    trainer = train_lib.Trainer(tcfg, log=logging.info)
    step = trainer._train_step  # pylint: disable=protected-access
    if len(trainer.class_names) == classes:
      return ((lambda batch: step(batch).numpy()),
              "mobilenet.keras.train_lib Trainer train step")
  except (ImportError, AttributeError, TypeError, ValueError) as e:
    logging.info("train_lib's Trainer not usable here (%s); using the "
                 "benchmark's copy of its step", e)
  import keras  # pylint: disable=g-import-not-at-top
  from mobilenet.keras import model as model_lib  # pylint: disable=g-import-not-at-top
  model = model_lib.MobileNetV2(
      input_shape=(cfg.size, cfg.size, 3), alpha=cfg.alpha, weights=None,
      classes=classes, classifier_activation=None)
  optimizer = keras.optimizers.RMSprop(5e-4)

  @tf.function
  def step(images, labels):
    with tf.GradientTape() as tape:
      logits = model(images, training=True)
      per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels=labels, logits=logits)
      loss = tf.reduce_mean(per_example)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    correct = tf.reduce_sum(tf.cast(
        tf.equal(tf.argmax(logits, -1), labels), tf.float32))
    return tf.stack([tf.reduce_sum(per_example), correct])

  return ((lambda batch: step(*batch).numpy()),
          "benchmark adapter: train_lib's step on mobilenet.keras.MobileNetV2")


def training(cfg, rng, out_tmp):
  """Median images/s of our train step loop and of Keras fit()."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf
  classes, b, n = 10, cfg.train_batch, cfg.train_steps
  images = rng.uniform(-1, 1, (b, cfg.size, cfg.size, 3)).astype(np.float32)
  labels = rng.integers(0, classes, b).astype(np.int64)
  ds = tf.data.Dataset.from_tensors((images, labels)).repeat(n).prefetch(2)

  ours_step, ours_impl = our_train_step(cfg, classes, out_tmp)
  keras.utils.set_random_seed(cfg.alpha.__hash__() & 0xffff)
  kmodel = keras.applications.MobileNetV2(
      input_shape=(cfg.size, cfg.size, 3), alpha=cfg.alpha, weights=None,
      classes=classes, classifier_activation=None)
  kmodel.compile(
      optimizer=keras.optimizers.RMSprop(5e-4),
      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=["accuracy"], jit_compile=False)

  def ours_loop():
    for batch in ds:
      ours_step(batch)

  def keras_fit():
    kmodel.fit(ds, epochs=1, steps_per_epoch=n, verbose=0)

  def keras_train_on_batch():
    for _ in range(n):
      kmodel.train_on_batch(images, labels)

  medians, _ = interleaved(
      {"ours_custom_loop": ours_loop, "keras_fit": keras_fit,
       "keras_train_on_batch": keras_train_on_batch},
      cfg.train_rounds, 1, 1, "train")
  return {k: n * b / v for k, v in medians.items()}, ours_impl


# ---- the run ----------------------------------------------------------------


def run(cfg, only=METRICS, seed=0, profile=False):
  """All measurements; returns (metrics, details dict)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  only = set(only)
  rng = np.random.default_rng(seed)
  tf.random.set_seed(seed)
  details = {"config": dataclasses.asdict(cfg), "keras_baseline": KERAS_BASELINE}
  metrics = []
  logging.info("building the shared weights (alpha=%s, %d px)", cfg.alpha,
               cfg.size)
  net, params = live_params(cfg.alpha, cfg.size, seed)
  del net
  kmodel = keras_reference(params, cfg.alpha, cfg.size)

  if "P1" in only:
    logging.info("P1: TF float latency, batch 1")
    t, err = tf_float(cfg, params, kmodel, 1, cfg.latency_rounds,
                      cfg.latency_calls, "P1", rng)
    details["P1_seconds"] = t
    details["P1_max_abs_diff"] = err
    ours = t["ours_concrete"]
    metrics.append(Metric(
        "P1", "TF float latency, batch 1 (ours / Keras)", ours * 1e3,
        t["keras_tf_function"] * 1e3, "ms", ours / t["keras_tf_function"],
        0.65, note=(f"ours via concrete fn {t['ours_concrete']*1e3:.2f} ms, "
                    f"via tf.function {t['ours_tf_function']*1e3:.2f} ms; "
                    f"Keras predict_on_batch "
                    f"{t['keras_predict_on_batch']*1e3:.2f} ms, eager "
                    f"model(x) {t['keras_eager_call']*1e3:.2f} ms")))
  if "P2" in only:
    b = cfg.throughput_batch
    logging.info("P2: TF float throughput, batch %d", b)
    t, _ = tf_float(cfg, params, kmodel, b, cfg.throughput_rounds, 1, "P2",
                    rng)
    details["P2_seconds"] = t
    ours = b / t["ours_concrete"]
    ref = b / t["keras_tf_function"]
    metrics.append(Metric(
        "P2", f"TF float throughput, batch {b} (ours / Keras)", ours, ref,
        "img/s", ours / ref, 1.75, higher_is_better=True,
        note=f"ours via tf.function {b / t['ours_tf_function']:.1f} img/s"))
  if profile and ("P1" in only or "P2" in only):
    for batch in (1, cfg.throughput_batch):
      logging.info("profiling TF ops at batch %d", batch)
      prof = tf_op_profile(cfg, params, kmodel, batch, rng)
      details[f"op_ms_per_call_batch{batch}"] = prof
      logging.info("op time per call, batch %d: ours %.2f ms, Keras %.2f ms",
                   batch, sum(prof["ours"].values()),
                   sum(prof["keras"].values()))

  if only & {"P3", "P4", "P5"}:
    rep = calibration_images(cfg)
    logging.info("P5: int8 conversion (%d calibration digits at %d px), %d "
                 "repeats each", len(rep), cfg.size, cfg.conversion_repeats)
    conv_ours, conv_stock = [], []
    for i in range(cfg.conversion_repeats):
      # Alternate which goes first: caches warmed by one help the other.
      order = ("ours", "stock") if i % 2 == 0 else ("stock", "ours")
      for who in order:
        if who == "ours":
          ours_int8, dt = timed(lambda: convert_ours(cfg, params, "int8", rep))
          conv_ours.append(dt)
        else:
          stock_int8, dt = timed(lambda: convert_stock(kmodel, "int8", rep))
          conv_stock.append(dt)
        logging.info("P5 %s int8 conversion: %.2f s", who, dt)
    details["P5_seconds"] = {"ours": conv_ours, "stock": conv_stock}
    if "P5" in only:
      o, s = statistics.median(conv_ours), statistics.median(conv_stock)
      metrics.append(Metric(
          "P5", "int8 conversion wall time (ours / stock converter)", o, s,
          "s", o / s, 0.35,
          note=f"{len(rep)} calibration digits; ours includes build + trace"))
    if "P4" in only:
      mb_o, mb_s = len(ours_int8) / 1e6, len(stock_int8) / 1e6
      full = cfg.alpha == 1.0 and cfg.size == 224
      metrics.append(Metric(
          "P4", f"int8 file size, alpha {cfg.alpha}/{cfg.size}", mb_o, mb_s,
          "MB", mb_o, 3.7 if full else None,
          note=(f"ours/stock = {mb_o / mb_s:.3f}" +
                ("" if full else "; the 3.7 MB target is for alpha 1.0/224"))))
    if "P3" in only:
      models = {"ours_int8": ours_int8, "stock_int8": stock_int8}
      for q in ("float", "float16"):
        logging.info("P3: converting %s models", q)
        models[f"ours_{q}"] = convert_ours(cfg, params, q, None)
        models[f"stock_{q}"] = convert_stock(kmodel, q, None)
      details["tflite_bytes"] = {k: len(v) for k, v in models.items()}
      for threads in cfg.threads:
        logging.info("P3: LiteRT latency, %d thread(s)", threads)
        t = litert_latency(cfg, models, threads, rng)
        details[f"P3_seconds_{threads}t"] = t
        for q in ("int8", "float", "float16"):
          o, s = t[f"ours_{q}"], t[f"stock_{q}"]
          metrics.append(Metric(
              f"P3 {q} {threads}t",
              f"LiteRT {q} latency, {threads} thread(s) (ours / stock)",
              o * 1e3, s * 1e3, "ms", o / s, 1.0 if q == "int8" else None))

  if "P6" in only:
    logging.info("P6: training throughput, batch %d", cfg.train_batch)
    with tempfile.TemporaryDirectory() as tmp:
      ips, impl = training(cfg, rng, tmp)
    details["P6_images_per_second"] = ips
    metrics.append(Metric(
        "P6", f"training throughput, batch {cfg.train_batch} "
        "(our loop / Keras fit)", ips["ours_custom_loop"], ips["keras_fit"],
        "img/s", ips["ours_custom_loop"] / ips["keras_fit"], 1.0,
        higher_is_better=True,
        note=(f"ours: {impl}; Keras train_on_batch loop "
              f"{ips['keras_train_on_batch']:.1f} img/s")))
  return metrics, details


# ---- reports --------------------------------------------------------------


def _fmt(v):
  if v is None:
    return "—"
  return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"


def environment():
  def version(dist):
    try:
      return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
      return None
  return {"python": platform.python_version(), "machine": platform.machine(),
          "cpus": os.cpu_count(),
          "tensorflow": version("tensorflow"), "keras": version("keras"),
          "ai-edge-litert": version("ai-edge-litert"),
          "numpy": np.__version__}


def markdown(metrics, meta):
  cfg = meta["config"]
  lines = [
      f"# Benchmark ({cfg['name']}: alpha {cfg['alpha']}, {cfg['size']} px)",
      "",
      f"`{meta['command']}` — {meta['date']}, {meta['env']['cpus']} CPUs, "
      f"load average {meta['load_before'][0]:.2f} before / "
      f"{meta['load_after'][0]:.2f} after (1 min), "
      f"{meta['seconds']:.0f} s in all.",
      "",
      "Ratios of medians measured in one process, the two sides interleaved "
      "round by round. Keras baseline: " + meta["keras_baseline"] + ".",
      "",
      "| metric | ours | reference | unit | ratio / value | target | met |",
      "|---|---|---|---|---|---|---|",
  ]
  for m in metrics:
    target = "—" if m.target is None else (
        ("≥ " if m.higher_is_better else "≤ ") + _fmt(m.target))
    met = {True: "yes", False: "**no**", None: ""}[m.met]
    lines.append(f"| {m.key}: {m.title} | {_fmt(m.ours)} | "
                 f"{_fmt(m.reference)} | {m.unit} | {m.value:.3f} | {target} "
                 f"| {met} |")
  notes = [f"- {m.key}: {m.note}" for m in metrics if m.note]
  if notes:
    lines += ["", "Notes:", ""] + notes
  profiles = [k for k in meta if k.startswith("op_ms_per_call_batch")]
  if profiles:
    lines += ["", "TF op time per call by op type (tf.profiler, 10 calls):",
              ""]
  for k in profiles:
    prof = meta[k]
    o, r = sum(prof["ours"].values()), sum(prof["keras"].values())
    top = lambda d: ", ".join(f"{op} {ms:.2f}" for op, ms in list(d.items())[:5])  # pylint: disable=cell-var-from-loop
    lines.append(f"- batch {k.rsplit('batch', 1)[1]}: ours {o:.2f} ms, Keras "
                 f"{r:.2f} ms (op-time ratio {o / r:.3f}); ours: {top(prof['ours'])};"
                 f" Keras: {top(prof['keras'])}")
  lines += ["", "Versions: " + ", ".join(
      f"{k} {v}" for k, v in meta["env"].items() if k not in ("cpus",)), ""]
  return "\n".join(lines)


def bar_chart(metrics, path, title):
  """One row per metric: the measured value and its target line."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(len(metrics), 1,
                           figsize=(7, 0.55 * len(metrics) + 1.2),
                           squeeze=False)
  for ax, m in zip(axes[:, 0], metrics):
    color = {True: "tab:green", False: "tab:red", None: "tab:gray"}[m.met]
    ax.barh([0], [m.value], color=color, height=0.6)
    top = max(m.value, m.target or 0, 1.0 if m.unit != "MB" else 0) * 1.25
    ax.set_xlim(0, top)
    if m.target is not None:
      ax.axvline(m.target, color="black", linestyle="--", linewidth=1)
    ax.text(m.value, 0, f" {m.value:.2f}", va="center", fontsize=8)
    ax.set_yticks([0])
    label = m.key + (" (MB)" if m.unit == "MB" else "")
    ax.set_yticklabels([label], fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
  axes[0, 0].set_title(title + "\nratio ours/reference (P4: MB); dashed = "
                       "target; green met, red missed", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def _atomic_write(path, data, mode="w"):
  directory = os.path.dirname(path)
  fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path),
                             suffix=".tmp", dir=directory)
  os.fchmod(fd, 0o644)
  try:
    with os.fdopen(fd, mode) as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_reports(metrics, meta, out_dir):
  """benchmark.md/.json/.png in out_dir, each written whole or not at all."""
  os.makedirs(out_dir, exist_ok=True)
  paths = {k: os.path.join(out_dir, "benchmark." + k)
           for k in ("md", "json", "png")}
  fd, tmp_png = tempfile.mkstemp(prefix=".benchmark", suffix=".png",
                                 dir=out_dir)
  os.close(fd)
  try:
    cfg = meta["config"]
    bar_chart(metrics, tmp_png,
              f"{cfg['name']}: alpha {cfg['alpha']}, {cfg['size']} px")
    os.chmod(tmp_png, 0o644)
    doc = dict(meta, metrics=[dict(dataclasses.asdict(m), met=m.met)
                              for m in metrics])
    _atomic_write(paths["json"], json.dumps(doc, indent=2, default=float)
                  + "\n")
    _atomic_write(paths["md"], markdown(metrics, meta))
    os.replace(tmp_png, paths["png"])
  finally:
    if os.path.exists(tmp_png):
      os.remove(tmp_png)
  return paths


# ---- command line -----------------------------------------------------------


def _parse_flags(argv):
  try:
    return FLAGS(argv)
  except flags.Error as e:
    sys.stderr.write(f"error: {e}; see --helpshort\n")
    sys.exit(2)


def check_flags():
  unknown = [m for m in FLAGS.only if m.upper() not in METRICS]
  if unknown:
    raise cli.UsageError(f"--only: unknown metric(s) {', '.join(unknown)}; "
                         f"choose from {','.join(METRICS)}")
  out_dir = cli.output_dir(cli.user_path(FLAGS.out_dir), "--out_dir")
  only = tuple(m.upper() for m in FLAGS.only) or METRICS
  return out_dir, only


def main(argv):
  if len(argv) > 1:
    raise cli.UsageError(f"unexpected argument(s) {' '.join(argv[1:])}; "
                         "all options are --flags (see --helpshort)")
  out_dir, only = check_flags()
  cfg = QUICK if FLAGS.quick else FULL
  logging.set_verbosity(logging.INFO)
  load_before = os.getloadavg()
  logging.info("benchmark %s config; load average %.2f %.2f %.2f", cfg.name,
               *load_before)
  start = time.time()
  metrics, details = run(cfg, only, FLAGS.seed, FLAGS.profile)
  meta = {
      "command": "tools/bazel run //tools:benchmark --" +
                 (" --quick" if FLAGS.quick else "") +
                 (f" --only={','.join(only)}" if FLAGS.only else ""),
      "date": datetime.datetime.now().isoformat(timespec="seconds"),
      "seconds": time.time() - start,
      "load_before": load_before, "load_after": os.getloadavg(),
      "env": environment(), **details,
  }
  paths = write_reports(metrics, meta, out_dir)
  print(markdown(metrics, meta))
  print("wrote " + ", ".join(paths.values()))


def _guarded(argv):
  try:
    return main(argv)
  except (ValueError, OSError) as e:
    sys.stderr.write("error: " + " ".join(str(e).split()) + "\n")
    sys.exit(1)


if __name__ == "__main__":
  app.run(_guarded, flags_parser=_parse_flags)
