"""`tflite_model`: a .tflite (+ JSON sidecar) built by the convert tool.

In the spirit of TFLite's `tf_to_tflite` genrule macro, but the source is our
raw-op MobileNetV2 (BN folded), named by a --weights spec rather than a
SavedModel.  The tool is deterministic, so the outputs are reproducible and
cacheable.

    load("//mobilenet/tflite:tflite_model.bzl", "tflite_model")
    tflite_model(name = "mobilenet_v2_int8", weights = "bundled", quantize = "int8")

produces mobilenet_v2_int8.tflite and mobilenet_v2_int8.json.
"""

_CONVERT = "//mobilenet/tflite:convert"

def tflite_model(
        name,
        weights = "bundled",
        quantize = "int8",
        alpha = None,
        input_size = None,
        num_calibration = None,
        calibration = None,
        weights_file = None,
        **kwargs):
    """Declares `name` (a genrule) with outputs <name>.tflite, <name>.json.

    Args:
      name: target name and output file stem.
      weights: auto | imagenet | bundled | random (ignored with weights_file).
        Keep "auto"/"imagenet" out of builds that must work offline.
      quantize: int8 | uint8 | float16 | dynamic | float.
      alpha: width multiplier, as a string (e.g. "0.35"); default the weights'.
      input_size: input height = width; default the weights'.
      num_calibration: number of calibration images (default 100).
      calibration: a filegroup of calibration images; default the tool's
        own (//data:calibration).
      weights_file: label of a Keras .h5 or checkpoint .json to convert.
      **kwargs: passed to the genrule (visibility, tags, ...).
    """
    srcs = []
    args = ["--quantize=" + quantize, "--name=" + name, "--save_to=$(RULEDIR)"]
    if weights_file:
        srcs.append(weights_file)
        args.append("--weights=$(execpath %s)" % weights_file)
    else:
        args.append("--weights=" + weights)
    if alpha != None:
        args.append("--alpha=%s" % alpha)
    if input_size != None:
        args.append("--input_size=%d" % input_size)
    if num_calibration != None:
        args.append("--num_calibration=%d" % num_calibration)
    if calibration:
        srcs.append(calibration)

        # The folder holding the filegroup's files.
        args.append("--calibration_dir=$$(dirname $$(echo $(execpaths %s) | cut -d' ' -f1))" % calibration)
    native.genrule(
        name = name,
        srcs = srcs,
        outs = [name + ".tflite", name + ".json"],
        # The summary goes to the build log only on failure.
        cmd = "$(execpath %s) %s > /dev/null" % (_CONVERT, " ".join(args)),
        tools = [_CONVERT],
        message = "Converting MobileNetV2 to %s TFLite (%s)" % (quantize, name),
        **kwargs
    )
