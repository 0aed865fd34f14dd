"""One benchmark run: the measurements of benchmark_measures turned into the
P1-P8 metrics (ratio ours / reference against its target).

  P1  TF float latency, batch 1: ours (forward.build, BN folded) / Keras
  P2  TF float throughput, large batch: ours / Keras
  P3  LiteRT latency (1 and 2 threads), our int8 / stock-converter int8;
      also float32 and float16, ours / stock
  P4  int8 .tflite size (MB, 10^6 bytes)
  P5  int8 conversion wall time: ours / TFLiteConverter.from_keras_model
  P6  training throughput: train_lib.Trainer's train step / Keras fit()
  P7  input pipeline: images/s of train's TFRecord pipeline (decode,
      augmentation, batching) / images/s of its train step
  P8  head phase: an epoch through the frozen backbone / an epoch on the
      cached features (train --freeze=backbone --augment=none)
"""

import dataclasses
import statistics

from absl import logging
import numpy as np

from tools import benchmark_harness as harness
from tools import benchmark_head
from tools import benchmark_measures as measures
from tools import benchmark_profile

METRICS = harness.METRICS
Metric = harness.Metric


def run(cfg, only=METRICS, seed=0, profile=False):
  """All measurements; returns (metrics, details dict)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  only = set(only)
  rng = np.random.default_rng(seed)
  tf.random.set_seed(seed)
  details = {"config": dataclasses.asdict(cfg),
             "keras_baseline": measures.KERAS_BASELINE}
  metrics = []
  logging.info("building the shared weights (alpha=%s, %d px)", cfg.alpha,
               cfg.size)
  source, kmodel = measures.shared_model(cfg)
  if "P1" in only:
    metrics.append(_latency(cfg, source, kmodel, rng, details))
  if "P2" in only:
    metrics.append(_throughput(cfg, source, kmodel, rng, details))
  if profile and only & {"P1", "P2"}:
    for batch in (1, cfg.throughput_batch):
      logging.info("profiling TF ops at batch %d", batch)
      prof = benchmark_profile.tf_op_profile(cfg, source, kmodel, batch, rng)
      details[f"op_ms_per_call_batch{batch}"] = prof
      logging.info("op time per call, batch %d: ours %.2f ms, Keras %.2f ms",
                   batch, sum(prof["ours"].values()),
                   sum(prof["keras"].values()))
  if only & {"P3", "P4", "P5"}:
    metrics += _tflite(cfg, source, kmodel, only, rng, details)
  if "P6" in only:
    metrics.append(_training(cfg, seed, details))
  if "P7" in only:
    metrics.append(_input_pipeline(cfg, seed, details))
  if "P8" in only:
    metrics.append(_head_phase(cfg, seed, details))
  return metrics, details


def _latency(cfg, source, kmodel, rng, details):
  logging.info("P1: TF float latency, batch 1")
  t, err = measures.tf_float(cfg, source, kmodel, 1, cfg.latency_rounds,
                             cfg.latency_calls, "P1", rng)
  details["P1_seconds"] = t
  details["P1_max_abs_diff"] = err
  ours = t["ours_concrete"]
  return Metric(
      "P1", "TF float latency, batch 1 (ours / Keras)", ours * 1e3,
      t["keras_tf_function"] * 1e3, "ms", ours / t["keras_tf_function"],
      0.65, note=(f"ours via concrete fn {t['ours_concrete']*1e3:.2f} ms, "
                  f"via tf.function {t['ours_tf_function']*1e3:.2f} ms; "
                  f"Keras predict_on_batch "
                  f"{t['keras_predict_on_batch']*1e3:.2f} ms, eager "
                  f"model(x) {t['keras_eager_call']*1e3:.2f} ms"))


def _throughput(cfg, source, kmodel, rng, details):
  b = cfg.throughput_batch
  logging.info("P2: TF float throughput, batch %d", b)
  t, _ = measures.tf_float(cfg, source, kmodel, b, cfg.throughput_rounds, 1,
                           "P2", rng)
  details["P2_seconds"] = t
  ours = b / t["ours_concrete"]
  ref = b / t["keras_tf_function"]
  return Metric(
      "P2", f"TF float throughput, batch {b} (ours / Keras)", ours, ref,
      "img/s", ours / ref, 1.75, higher_is_better=True,
      note=f"ours via tf.function {b / t['ours_tf_function']:.1f} img/s")


def _tflite(cfg, source, kmodel, only, rng, details):
  """P5 (conversion time), P4 (size) and P3 (LiteRT latency)."""
  rep = measures.calibration_images(cfg)
  logging.info("P5: int8 conversion (%d calibration digits at %d px), %d "
               "repeats each", len(rep), cfg.size, cfg.conversion_repeats)
  convert = {"ours": lambda q, r: measures.convert_ours(source, q, r),
             "stock": lambda q, r: measures.convert_stock(kmodel, q, r)}
  seconds = {"ours": [], "stock": []}
  int8 = {}
  for i in range(cfg.conversion_repeats):
    # Alternate which goes first: caches warmed by one help the other.
    for who in ("ours", "stock") if i % 2 == 0 else ("stock", "ours"):
      int8[who], dt = harness.timed(lambda: convert[who]("int8", rep))  # pylint: disable=cell-var-from-loop
      seconds[who].append(dt)
      logging.info("P5 %s int8 conversion: %.2f s", who, dt)
  details["P5_seconds"] = seconds
  metrics = []
  if "P5" in only:
    o, s = (statistics.median(seconds[k]) for k in ("ours", "stock"))
    metrics.append(Metric(
        "P5", "int8 conversion wall time (ours / stock converter)", o, s,
        "s", o / s, 0.35,
        note=f"{len(rep)} calibration digits; ours includes build + trace"))
  if "P4" in only:
    mb_o, mb_s = len(int8["ours"]) / 1e6, len(int8["stock"]) / 1e6
    full = cfg.alpha == 1.0 and cfg.size == 224
    metrics.append(Metric(
        "P4", f"int8 file size, alpha {cfg.alpha}/{cfg.size}", mb_o, mb_s,
        "MB", mb_o, 3.7 if full else None,
        note=(f"ours/stock = {mb_o / mb_s:.3f}" +
              ("" if full else "; the 3.7 MB target is for alpha 1.0/224"))))
  if "P3" in only:
    models = {f"{who}_int8": data for who, data in int8.items()}
    for q in ("float", "float16"):
      logging.info("P3: converting %s models", q)
      for who in ("ours", "stock"):
        models[f"{who}_{q}"] = convert[who](q, None)
    details["tflite_bytes"] = {k: len(v) for k, v in models.items()}
    for threads in cfg.threads:
      logging.info("P3: LiteRT latency, %d thread(s)", threads)
      t = measures.litert_latency(cfg, models, threads, rng)
      details[f"P3_seconds_{threads}t"] = t
      for q in ("int8", "float", "float16"):
        o, s = t[f"ours_{q}"], t[f"stock_{q}"]
        metrics.append(Metric(
            f"P3 {q} {threads}t",
            f"LiteRT {q} latency, {threads} thread(s) (ours / stock)",
            o * 1e3, s * 1e3, "ms", o / s, 1.0 if q == "int8" else None))
  return metrics


def _training(cfg, seed, details):
  logging.info("P6: training throughput, batch %d", cfg.train_batch)
  ips = measures.training(cfg, seed)
  details["P6_images_per_second"] = ips
  return Metric(
      "P6", f"training throughput, batch {cfg.train_batch} "
      "(our loop / Keras fit)", ips["ours_custom_loop"], ips["keras_fit"],
      "img/s", ips["ours_custom_loop"] / ips["keras_fit"], 1.0,
      higher_is_better=True,
      note=("ours: mobilenet.keras.train_lib.Trainer's compiled train step "
            "(Trainer.train_batches); Keras train_on_batch loop "
            f"{ips['keras_train_on_batch']:.1f} img/s"))


def _input_pipeline(cfg, seed, details):
  logging.info("P7: TFRecord input pipeline against the train step, batch %d",
               cfg.train_batch)
  ips = measures.input_pipeline(cfg, seed)
  details["P7_images_per_second"] = ips
  h, w = cfg.photo_size
  return Metric(
      "P7", f"TFRecord input pipeline / train step, batch {cfg.train_batch}",
      ips["records_pipeline"], ips["train_step"], "img/s",
      ips["records_pipeline"] / ips["train_step"], 3.0,
      higher_is_better=True,
      note=(f"ours: train --train_files' pipeline (records.RecordPipeline: "
            f"interleave, shuffle, Pillow decode of {w}x{h} JPEGs, "
            f"--augment=photos, batch) over {cfg.records_images} images in "
            "4 shards, whole epochs from a cold start; reference: "
            "Trainer.train_batches on cached batches of the same pipeline; "
            "measured one after the other, so each had both cores"))


def _head_phase(cfg, seed, details):
  logging.info("P8: head-phase epoch, cached features vs the frozen "
               "backbone, %d digits", cfg.head_images)
  t = benchmark_head.head_epoch(cfg, seed)
  details["P8_seconds"] = t
  return Metric(
      "P8", f"head-phase epoch, batch {cfg.train_batch} (through the "
      "frozen backbone / on cached features)", t["cached"], t["uncached"],
      "s", t["uncached"] / t["cached"], 10.0, higher_is_better=True,
      note=(f"ours: Trainer.epoch_stream + train_batches over {t['images']} "
            "training digits with the feature cache (train --freeze=backbone "
            "--augment=none); reference: the same Trainer path with "
            "--nofeature_cache (decode + backbone + head every epoch); the "
            f"cache's one-time build took {t['cache_build']:.1f} s"))
