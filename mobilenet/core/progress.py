"""Progress of long work on stderr: one updating line on a terminal, a line
per 10 % in a log."""

import sys
import time


class Progress:
  """One updating line on a terminal, a line per 10 % otherwise."""

  def __init__(self, total, out=sys.stderr):
    self.total, self.out = total, out
    self.start = time.time()
    self.tty = out.isatty()
    self.shown = -1

  def update(self, done, skipped):
    rate = done / max(time.time() - self.start, 1e-9)
    line = (f"{done}/{self.total} images ({100 * done // self.total}%), "
            f"{skipped} skipped, {rate:.0f} images/s")
    if self.tty:
      bar = "#" * (30 * done // self.total)
      self.out.write(f"\r[{bar:<30}] {line}")
      if done == self.total:
        self.out.write("\n")
    elif 10 * done // self.total > self.shown:
      self.shown = 10 * done // self.total
      self.out.write(line + "\n")
    self.out.flush()
