"""The integer-exact forward: a full-integer .tflite computed with TensorFlow
ops on integers, bit for bit as TFLite's reference kernels and TFLite Micro.

    model = exact_forward.ExactModel("out/m.tflite")
    scores = model.predict_pixels(pixels, "tf")       # like runtime.Model
    every = model.forward(model.quantize_pixels(pixels))  # {index: array}

`forward` returns every tensor the graph computes (int8 activations, the
model's own dtypes), keyed by tensor index, for any batch size: the
reference against which LiteRT and TFLM outputs are compared layer by layer,
and where one sees which layer's rounding moves a result.  The graph is read
from the flatbuffer (exact_graph), each op computed by exact_kernels.
"""

import os

import numpy as np
import tensorflow as tf

from mobilenet.tflite import classifier
from mobilenet.tflite import exact_graph
from mobilenet.tflite import exact_kernels
from mobilenet.tflite import runtime

UnsupportedModelError = exact_kernels.UnsupportedModelError
# Images per forward pass: at most CHUNK, and at most so many that the widest
# layer's float64 accumulators stay within ACCUMULATOR_BYTES; large enough
# to keep the per-op overhead small.
CHUNK = 64
ACCUMULATOR_BYTES = 256 << 20


class ExactModelError(classifier.ModelFileError):
  """The model cannot be run by the integer-exact forward; one line why."""


def _load(model):
  if isinstance(model, (bytes, bytearray)):
    data = bytes(model)
    runtime.check_model_bytes(data)
    return None, data
  path = os.fspath(model)
  return path, runtime.read_model(path)


class ExactModel(classifier.Classifier):
  """A full-integer .tflite (path or bytes) computed by the integer-exact
  forward; the same interface as runtime.Model and MicroModel."""

  def __init__(self, model):
    self.path, data = _load(model)
    self.num_bytes = len(data)
    name = self.name = self.path or "<bytes>"
    self.graph = exact_graph.read_graph(data, name)
    g = self.graph
    if len(g.inputs) != 1 or len(g.outputs) != 1:
      raise ExactModelError(f"{name}: expected one input and one output, got "
                            f"{len(g.inputs)} and {len(g.outputs)}")
    unknown = sorted({op.name for op in g.ops} - set(exact_kernels.KERNELS))
    if unknown:
      raise ExactModelError(
          f"{name}: the integer-exact forward has no kernel for "
          f"{', '.join(unknown)} (it runs full-integer int8 models: convert "
          "with --quantize int8 or uint8)")
    for op in g.ops:
      for i in op.inputs[:1]:
        if (op.name not in ("QUANTIZE", "RESHAPE") and
            g.tensors[i].dtype == np.float32):
          raise ExactModelError(
              f"{name}: op {op.index} ({op.name}) computes in float; the "
              "integer-exact forward runs full-integer models only")
    inp, out = g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]
    self.input, self.output = inp.detail(), out.detail()
    self._set_io(name, inp.shape, inp.dtype, (inp.scale, inp.zero_point),
                 out.shape, out.dtype, (out.scale, out.zero_point))
    self._last = {}
    widest = max(int(np.prod(t.shape[1:])) for t in g.tensors if t.shape)
    self.chunk = max(1, min(CHUNK, ACCUMULATOR_BYTES // (8 * widest)))

  # ---- the forward -----------------------------------------------------

  def forward(self, batch):
    """Every tensor the graph computes for `batch` (inputs in the model's
    type, any batch size): {tensor index: numpy array of its dtype}."""
    g = self.graph
    batch = np.asarray(batch)
    want = self.input_shape[1:]
    if batch.ndim != 4 or batch.shape[1:] != want:
      raise ValueError(f"batch must have shape (n,) + {want}, got "
                       f"{batch.shape}")
    values = {g.inputs[0]: tf.constant(batch.astype(np.int64)
                                       if batch.dtype != np.float32
                                       else batch)}
    for op in g.ops:
      try:
        result = exact_kernels.KERNELS[op.name](g, op, values)
      except exact_kernels.UnsupportedModelError as e:
        raise ExactModelError(f"{self.name}: op {op.index} ({op.name}): "
                              f"{e}") from None
      values[op.outputs[0]] = result
    out = {}
    for index, value in values.items():
      dtype = g.tensors[index].dtype
      v = value.numpy()
      if dtype != np.float32:
        info = np.iinfo(dtype)
        if v.min(initial=0) < info.min or v.max(initial=0) > info.max:
          raise AssertionError(f"tensor {index} left the {dtype} range")
      out[index] = v.astype(dtype)
    return out

  def run_raw(self, batch):
    """Outputs in the model's type for inputs in its type: the whole batch,
    in chunks of `self.chunk` images (no fixed batch size here)."""
    results, last = [], {}
    for start in range(0, len(batch), self.chunk):
      last = self.forward(batch[start:start + self.chunk])
      results.append(last[self.graph.outputs[0]])
    self._last = last
    return np.concatenate(results)

  def _invoke(self, batch):
    return self.run_raw(batch)

  # ---- tensors, as runtime.Model gives them for a dump ------------------

  def activation_indices(self):
    """Indices of the tensors computed at run time (input and op outputs)."""
    g = self.graph
    return {g.inputs[0]} | {o for op in g.ops for o in op.outputs}

  def tensors(self):
    """(detail, value) for every tensor after the last run: constants from
    the flatbuffer, activations of the last chunk computed."""
    out = []
    for t in self.graph.tensors:
      value = self._last.get(t.index, t.data)
      out.append((t.detail(), value))
    return out
