"""py_wheel: a pure-Python wheel of py_library / py_binary targets.

Debian's packaged rules_python leaves out its wheelmaker tool, so the offline
build can't use @rules_python's py_wheel; this rule does the same job with our
own small wheelmaker and works the same online.

    py_wheel(
        name = "wheel",
        deps = ["//mobilenet/tflite:convert", ...],   # their sources, transitively
        data = ["//data:calibration", ...],           # files shipped as package data
        packages = {"mobilenet": "mobilenet", "data": "mobilenet/data"},
        console_scripts = {"mobilenet-convert": "mobilenet.console:convert"},
        ...
    )

`packages` maps repository directories to their place in the wheel; only this
repository's files under those directories are packed (third-party deps become
`requires`).  The wheel is byte-identical from build to build.
"""

load("@rules_python//python:defs.bzl", "PyInfo")

def _wheel_path(f, packages):
    """Path of `f` inside the wheel, or None when no package maps it."""
    for src in sorted(packages.keys(), key = lambda p: -len(p)):
        if f.short_path.startswith(src + "/"):
            return packages[src] + f.short_path[len(src):]
    return None

def _py_wheel_impl(ctx):
    files = depset(transitive = [d[PyInfo].transitive_sources for d in ctx.attr.deps] +
                                [d[DefaultInfo].files for d in ctx.attr.data]).to_list()
    mapped = {}  # wheel path -> File
    for f in files:
        if f.owner == None or f.owner.workspace_name != "":
            continue
        arcname = _wheel_path(f, ctx.attr.packages)
        if arcname == None:
            if f.extension != "py":
                fail("%s: data file outside every `packages` directory" % f.short_path)
            continue
        if arcname in mapped and mapped[arcname] != f:
            fail("%s and %s both map to %s" % (mapped[arcname].short_path, f.short_path, arcname))
        mapped[arcname] = f
    name = "%s-%s-py3-none-any.whl" % (ctx.attr.distribution, ctx.attr.version)
    out = ctx.actions.declare_file(name)
    arcnames = sorted(mapped.keys())
    args = ctx.actions.args()
    args.add("--out", out)
    args.add("--distribution", ctx.attr.distribution)
    args.add("--version", ctx.attr.version)
    args.add("--summary", ctx.attr.summary)
    args.add("--python_requires", ctx.attr.python_requires)
    args.add_all(ctx.attr.requires, format_each = "--requires=%s")
    args.add_all(
        ["%s=%s" % (k, v) for k, v in sorted(ctx.attr.console_scripts.items())],
        format_each = "--console_script=%s",
    )
    args.add_all(arcnames, format_each = "--file=%s")
    args.add_all([mapped[a] for a in arcnames], format_each = "--path=%s")
    ctx.actions.run(
        executable = ctx.executable._wheelmaker,
        arguments = [args],
        inputs = [mapped[a] for a in arcnames],
        outputs = [out],
        mnemonic = "PyWheel",
        progress_message = "Building wheel %s" % name,
    )
    return [DefaultInfo(files = depset([out]))]

py_wheel = rule(
    implementation = _py_wheel_impl,
    attrs = {
        "console_scripts": attr.string_dict(
            doc = "Command name -> `module:function` (a function of no arguments).",
        ),
        "data": attr.label_list(
            allow_files = True,
            doc = "Files shipped as package data (their place set by `packages`).",
        ),
        "deps": attr.label_list(providers = [PyInfo], mandatory = True),
        "distribution": attr.string(mandatory = True),
        "packages": attr.string_dict(
            mandatory = True,
            doc = "Repository directory -> directory in the wheel; the longest match wins.",
        ),
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
