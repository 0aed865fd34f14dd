"""`mobilenet_py_test`: py_test with what every test in this repository needs."""

load("@rules_python//python:defs.bzl", "py_test")

_COMMON_DEPS = [
    "@mnv2_pip//absl_py",
    "@mnv2_pip//numpy",
]

def mobilenet_py_test(name, deps = [], env = {}, tensorflow = True, **kwargs):
    """A py_test with absl (absltest), numpy and, unless `tensorflow = False`,
    TensorFlow, and with TensorFlow's C++ start-up log lines turned off (they
    would bury a failure's message). Other deps are the test's own."""
    common = _COMMON_DEPS + (["@mnv2_pip//tensorflow"] if tensorflow else [])
    test_env = {"TF_CPP_MIN_LOG_LEVEL": "2"}
    test_env.update(env)
    py_test(
        name = name,
        deps = deps + [d for d in common if d not in deps],
        env = test_env,
        **kwargs
    )
