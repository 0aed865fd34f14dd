"""The compiled steps of the training loop: train, evaluate, BN statistics.

Each is one tf.function over a distributed batch, run by every replica of
the tf.distribute strategy; the per-replica loss is scaled by the global
batch, so N replicas compute the same update as one device with N times the
batch (BN statistics included: see layers.BatchNorm).
"""

import dataclasses
from typing import Callable

import tensorflow as tf


@dataclasses.dataclass
class Steps:
  train: Callable   # batch -> [loss sum, correct, count]; one update
  evaluate: Callable  # batch -> [loss sum, correct, count]
  bn_statistics: Callable  # batch -> None; feeds BN re-estimation


def _loss_and_counts(labels, logits, label_smoothing=0.0):
  if label_smoothing:
    # Keras' rule: targets (1 - s) * one_hot + s / classes.
    classes = tf.shape(logits)[-1]
    targets = tf.one_hot(labels, classes) * (1.0 - label_smoothing) + (
        label_smoothing / tf.cast(classes, tf.float32))
    per_example = tf.nn.softmax_cross_entropy_with_logits(
        labels=targets, logits=logits)
  else:
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=logits)
  correct = tf.reduce_sum(tf.cast(
      tf.equal(tf.argmax(logits, -1), labels), tf.float32))
  n = tf.cast(tf.shape(labels)[0], tf.float32)
  return per_example, tf.stack([tf.reduce_sum(per_example), correct, n])


def build(model, optimizer, strategy, global_batch, spec, counters,
          label_smoothing=0.0):
  """Steps for `model`; `spec` is the distributed dataset's element_spec
  (batch dimension unknown: the last, smaller batch of an epoch does not
  trace again). `counters` holds the tf.Variables step, step_in_epoch and
  bn_count that the steps advance.  Trainable flags (finetune.apply) are
  read when a step is traced: build again after changing them."""

  def eval_replica(images, labels):
    _, sums = _loss_and_counts(labels, model(images, training=False))
    return sums

  def bn_replica(images):
    model(images, training=True)
    return tf.constant(0.0)

  def reduce(per_replica):
    return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, None)

  @tf.function(input_signature=[spec])
  def eval_step(batch):
    return reduce(strategy.run(eval_replica, args=batch))

  @tf.function(input_signature=[spec])
  def bn_step(batch):
    strategy.run(bn_replica, args=(batch[0],))
    counters.bn_count.assign_add(1.0)

  train_step = train(lambda images: model(images, training=True),
                     lambda: model.trainable_variables, optimizer, strategy,
                     global_batch, spec, counters, label_smoothing)
  return Steps(train_step, eval_step, bn_step)


def train(forward, variables, optimizer, strategy, global_batch, spec,
          counters, label_smoothing=0.0):
  """batch -> [loss sum, correct, count]: one update of `variables()` (read
  when traced) through `forward(inputs) -> logits`; advances the counters.
  The model's step, and the head's on cached features (feature_cache.py)."""

  def train_replica(inputs, labels):
    with tf.GradientTape() as tape:
      logits = forward(inputs)
      per_example, sums = _loss_and_counts(labels, logits, label_smoothing)
      loss = tf.nn.compute_average_loss(per_example,
                                        global_batch_size=global_batch)
    weights = variables()
    grads = tape.gradient(loss, weights)
    optimizer.apply_gradients(zip(grads, weights))
    return sums

  @tf.function(input_signature=[spec])
  def train_step(batch):
    sums = strategy.reduce(tf.distribute.ReduceOp.SUM,
                           strategy.run(train_replica, args=batch), None)
    counters.step.assign_add(1)
    counters.step_in_epoch.assign_add(1)
    return sums

  return train_step
