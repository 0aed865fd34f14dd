"""py_wheel: a pure-Python wheel of py_library targets.

Debian's packaged rules_python leaves out its wheelmaker tool, so the offline
build can't use @rules_python's py_wheel; this rule does the same job with our
own small wheelmaker and works the same online.
"""

load("@rules_python//python:defs.bzl", "PyInfo")

def _py_wheel_impl(ctx):
    # Only this repository's files under `packages`; third-party deps become `requires`.
    srcs = [
        f
        for f in depset(transitive = [d[PyInfo].transitive_sources for d in ctx.attr.deps]).to_list()
        if f.owner.workspace_name == "" and any([f.short_path.startswith(p + "/") for p in ctx.attr.packages])
    ]
    name = "%s-%s-py3-none-any.whl" % (ctx.attr.distribution, ctx.attr.version)
    out = ctx.actions.declare_file(name)
    args = ctx.actions.args()
    args.add("--out", out)
    args.add("--distribution", ctx.attr.distribution)
    args.add("--version", ctx.attr.version)
    args.add("--summary", ctx.attr.summary)
    args.add("--python_requires", ctx.attr.python_requires)
    args.add_all(ctx.attr.requires, format_each = "--requires=%s")
    args.add_all([f.short_path for f in srcs], format_each = "--file=%s")
    args.add_all(srcs, format_each = "--path=%s")
    ctx.actions.run(
        executable = ctx.executable._wheelmaker,
        arguments = [args],
        inputs = srcs,
        outputs = [out],
        mnemonic = "PyWheel",
        progress_message = "Building wheel %s" % name,
    )
    return [DefaultInfo(files = depset([out]))]

py_wheel = rule(
    implementation = _py_wheel_impl,
    attrs = {
        "deps": attr.label_list(providers = [PyInfo], mandatory = True),
        "distribution": attr.string(mandatory = True),
        "packages": attr.string_list(mandatory = True),
        "python_requires": attr.string(default = ">=3.10"),
        "requires": attr.string_list(),
        "summary": attr.string(),
        "version": attr.string(mandatory = True),
        "_wheelmaker": attr.label(
            default = "//third_party/wheel:wheelmaker",
            executable = True,
            cfg = "exec",
        ),
    },
)
