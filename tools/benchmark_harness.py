"""The benchmark's timing harness: run sizes, interleaved rounds, medians and
the ratio-against-target records every measurement ends in.

Every figure is a RATIO of two medians measured in one process, with the two
sides interleaved round by round so machine load hits both alike (absolute
times on a shared 2-core machine are noise; the ratios are the result).
"""

import dataclasses
import statistics
import time

from absl import logging

METRICS = ("P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8")


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
  # P7: photo-sized JPEGs (ImageNet's are ~500x375) written as TFRecords.
  records_images: int = 160
  photo_size: tuple = (375, 500)
  # P8: held-out digits in a head-phase epoch.
  head_images: int = 64


FULL = Config("full", alpha=1.0, size=224, throughput_batch=32, train_batch=32,
              train_steps=2, latency_rounds=15, latency_calls=5,
              throughput_rounds=7, tflite_rounds=15, tflite_calls=5,
              conversion_repeats=3, train_rounds=3, head_images=256)
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


def timed(fn):
  """(fn(), wall seconds it took)."""
  start = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - start


def sync(x):
  """Waits for a TF result (its .numpy()); other values pass through."""
  return x.numpy() if hasattr(x, "numpy") else x
