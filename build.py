#!/usr/bin/env python3
"""mpinit's build entry point (standard library only).

  python3 build.py runtime   build the static MicroPython with the agent frozen in: build/mpinit-init
  python3 build.py test      set up, build, run every test (unit, MicroPython, QEMU end-to-end)
  python3 build.py demo      set up, build, and boot a live system in QEMU with the console on this terminal
  python3 build.py bench     run the benchmarks against the busybox-script init and write bench/RESULTS.md

Set-up (Debian packages via apt-get when root, a virtual environment in build/venv) is part of every command.
"""

import argparse
import os
import subprocess
import sys

from buildsys import setup
from buildsys.common import ROOT, RUNTIME, VENV_PYTHON, BuildError, log


def cmd_runtime(args):
    from buildsys import runtime

    setup.ensure_packages()
    runtime.build(args)


def cmd_test(args):
    setup.ensure()
    from buildsys import runtime

    runtime.build(args)
    argv = [str(VENV_PYTHON), "-m", "pytest"] + args.pytest_args
    log("running: %s" % " ".join(argv))
    env = dict(os.environ, MPINIT_RUNTIME=str(RUNTIME))
    return subprocess.call(argv, cwd=ROOT, env=env)


def cmd_demo(args):
    setup.ensure()
    from buildsys import runtime

    runtime.build(args)
    argv = [str(VENV_PYTHON), "-m", "mpinit", "demo", "--runtime", str(RUNTIME)] + args.demo_args
    return subprocess.call(argv, cwd=ROOT)


def cmd_bench(args):
    setup.ensure()
    from buildsys import runtime

    runtime.build(args)
    return subprocess.call([str(VENV_PYTHON), str(ROOT / "bench" / "run.py")] + args.bench_args, cwd=ROOT)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="build.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def runtime_options(p):
        p.add_argument("--micropython-src", metavar="PATH",
                       help="MicroPython 1.25.0 source: a directory or a tarball (default: fetched with apt-get "
                            "source and cached under build/)")

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

    p = sub.add_parser("bench", help="benchmark against the busybox-script init (writes bench/RESULTS.md)")
    runtime_options(p)
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
