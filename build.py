#!/usr/bin/env python3
"""mpinit's build entry point (standard library only).

  python3 build.py runtime   build the static MicroPython with the agent frozen in: build/mpinit-init
                             (--arch arm64: cross-built for 64-bit ARM into build/arm64/mpinit-init)
  python3 build.py test      set up, build, run every test (unit, MicroPython, QEMU end-to-end)
  python3 build.py demo      set up, build, and boot a live system in QEMU with the console on this terminal
  python3 build.py bench     run the benchmarks against the busybox-script init and write bench/RESULTS.md
  python3 build.py wheel     build the runtime and a platform wheel carrying it: build/dist/mpinit-*.whl

Set-up (Debian packages via apt-get when root, a virtual environment in build/venv) is part of every command.
"""

import argparse
import os
import subprocess
import sys

from buildsys import setup
from buildsys.common import ROOT, VENV_PYTHON, BuildError, log


def _foreign(arch):
    """The architecture when it is not the build machine's (it then needs the cross packages), else None."""
    from buildsys import arches

    return None if arches.is_native(arch) else arches.get(arch).name


def cmd_runtime(args):
    from buildsys import runtime

    setup.ensure_packages(_foreign(args.arch) if args.arch else None)
    runtime.build(args)


def cmd_test(args):
    from buildsys import arches, runtime

    # The other architecture's runtime is tested too (under qemu-user, and booted in QEMU): arm64 on an x86_64
    # build machine. --arch limits the build (and what the environment points the tests at) to one.
    wanted = [arches.get(args.arch)] if args.arch else [arches.native()] + [
        a for a in arches.ARCHES.values() if a.name == "arm64" and not arches.is_native(a)]
    foreign = [a.name for a in wanted if not arches.is_native(a)]
    setup.ensure(foreign[0] if foreign else None)
    env = dict(os.environ)
    for arch in wanted:
        args.arch = arch.name
        path = runtime.build(args)
        env["MPINIT_RUNTIME" if arches.is_native(arch) else "MPINIT_RUNTIME_" + arch.name.upper()] = str(path)
    argv = [str(VENV_PYTHON), "-m", "pytest"] + args.pytest_args
    log("running: %s" % " ".join(argv))
    return subprocess.call(argv, cwd=ROOT, env=env)


def cmd_demo(args):
    from buildsys import arches

    setup.ensure(_foreign(args.arch) if args.arch else None)
    from buildsys import runtime

    path = runtime.build(args)
    argv = [str(VENV_PYTHON), "-m", "mpinit", "demo", "--runtime", str(path)]
    if args.arch:
        argv += ["--arch", arches.get(args.arch).name]
    return subprocess.call(argv + args.demo_args, cwd=ROOT)


def cmd_wheel(args):
    from buildsys import arches, runtime, wheel
    from buildsys.common import BUILD

    setup.ensure_packages(_foreign(args.arch) if args.arch else None)
    path = runtime.build(args)
    wheel.build(path, args.out or BUILD / "dist", (arches.get(args.arch) if args.arch else arches.native()).name)


def cmd_bench(args):
    setup.ensure()
    from buildsys import runtime

    runtime.build(args)
    return subprocess.call([str(VENV_PYTHON), str(ROOT / "bench" / "run.py")] + args.bench_args, cwd=ROOT)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="build.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def runtime_options(p, arch=True):
        p.add_argument("--micropython-src", metavar="PATH",
                       help="MicroPython 1.25.0 source: a directory or a tarball (default: fetched with apt-get "
                            "source and cached under build/)")
        if arch:
            p.add_argument("--arch", choices=("x86_64", "arm64"), default=None,
                           help="the CPU the runtime is for (default: this machine's; another one is cross-built "
                                "into build/<arch>/mpinit-init)")

    p = sub.add_parser("runtime", help="build the static MicroPython /init (build/mpinit-init)")
    runtime_options(p)
    p.set_defaults(func=cmd_runtime)

    p = sub.add_parser("test", help="set up, build and run all tests (extra arguments go to pytest)")
    runtime_options(p)
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="passed to pytest, e.g. -k cmdline or -m 'not e2e'")
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("demo", help="set up, build and boot a live system in QEMU")
    runtime_options(p)
    p.add_argument("demo_args", nargs=argparse.REMAINDER, help="passed to `mpinit demo`")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("wheel", help="build a platform wheel of mpinit with the runtime inside (build/dist/)")
    runtime_options(p)
    p.add_argument("--out", metavar="DIR", default=None, help="where to write the wheel (default build/dist)")
    p.set_defaults(func=cmd_wheel)

    p = sub.add_parser("bench", help="benchmark against the busybox-script init (writes bench/RESULTS.md)")
    runtime_options(p, arch=False)   # the benchmarks boot the build machine's runtime
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="passed to bench/run.py")
    p.set_defaults(func=cmd_bench)

    # Options meant for pytest / `mpinit demo` / bench/run.py (e.g. `test -m "not e2e"`) are not ours: argparse
    # leaves them in `extra`, and they go on after any positional ones.
    args, extra = parser.parse_known_args(argv)
    passthrough = {"test": "pytest_args", "demo": "demo_args", "bench": "bench_args"}.get(args.command)
    if extra and not passthrough:
        parser.error("unrecognized arguments: %s" % " ".join(extra))
    if passthrough:
        setattr(args, passthrough, extra + getattr(args, passthrough))
    try:
        return args.func(args) or 0
    except BuildError as e:
        print("build.py: error: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("build.py: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
