"""`tflite_model`: a .tflite (+ JSON sidecar) built by the convert tool.

In the spirit of TFLite's `tf_to_tflite` genrule macro, but the source is our
raw-op MobileNetV2 (BN folded), named by a --weights spec rather than a
SavedModel.  The tool is deterministic, so the outputs are reproducible and
cacheable.

    load("//mobilenet/tflite:tflite_model.bzl", "tflite_model")
    tflite_model(name = "mobilenet_v2_int8", weights = "bundled", quantize = "int8")

produces mobilenet_v2_int8.tflite and mobilenet_v2_int8.json.

`tflite_micro_model` is the microcontroller build of the same conversion
(convert --target=micro): int8, batch 1, TFLM's ops only, plus
<name>_model_data.h/.cc, <name>_op_resolver.h, the tensor arena measured in
the TFLM interpreter (in the sidecar) and a cc_library <name>_model_data.
"""

# A Label, so that the tool resolves in this repository when another Bazel
# module loads the macros.
_CONVERT = Label("//mobilenet/tflite:convert")

def _convert_args(name, weights, quantize, alpha, input_size,
                  num_calibration, calibration, weights_file, granularity):
    """(srcs, convert flags) shared by both macros."""
    srcs = []
    args = ["--quantize=" + quantize, "--name=" + name, "--save_to=$(RULEDIR)"]
    if granularity != None:
        args.append("--granularity=" + granularity)
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
    return srcs, args

def tflite_model(
        name,
        weights = "bundled",
        quantize = "int8",
        alpha = None,
        input_size = None,
        num_calibration = None,
        calibration = None,
        weights_file = None,
        granularity = None,
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
      granularity: per_channel | per_tensor weight scales (int8 / uint8
        only); default per_channel.
      **kwargs: passed to the genrule (visibility, tags, ...).
    """
    srcs, args = _convert_args(name, weights, quantize, alpha, input_size,
                               num_calibration, calibration, weights_file,
                               granularity)
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

def tflite_micro_model(
        name,
        weights = "bundled",
        alpha = None,
        input_size = None,
        num_calibration = None,
        calibration = None,
        weights_file = None,
        granularity = None,
        patches = None,
        **kwargs):
    """Declares `name` (a genrule: the int8 TFLite Micro build) and
    `<name>_model_data` (a cc_library of the model array).

    Outputs <name>.tflite, <name>.json (with the measured arena under
    "micro"), <name>_model_data.h, <name>_model_data.cc and
    <name>_op_resolver.h (it includes TFLM's micro_mutable_op_resolver.h, so
    it is a file for your TFLM project, not part of the cc_library).
    Arguments as for tflite_model; the quantization is always int8.
    `patches`: auto | RxC | RxC@LAYER (convert --patches): the first blocks
    run patch by patch, same outputs, in the arena TFLM measures smallest;
    default off.
    """
    srcs, args = _convert_args(name, weights, "int8", alpha, input_size,
                               num_calibration, calibration, weights_file,
                               granularity)
    args.append("--target=micro")
    if patches != None:
        args.append("--patches=" + patches)
    native.genrule(
        name = name,
        srcs = srcs,
        outs = [
            name + ".tflite",
            name + ".json",
            name + "_model_data.h",
            name + "_model_data.cc",
            name + "_op_resolver.h",
        ],
        cmd = "$(execpath %s) %s > /dev/null" % (_CONVERT, " ".join(args)),
        tools = [_CONVERT],
        message = "Converting MobileNetV2 for TFLite Micro (%s)" % name,
        **kwargs
    )
    native.cc_library(
        name = name + "_model_data",
        srcs = [name + "_model_data.cc"],
        hdrs = [name + "_model_data.h"],
        visibility = kwargs.get("visibility"),
        tags = kwargs.get("tags"),
    )
