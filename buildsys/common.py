"""Paths and the one run() helper shared by build.py's parts."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
VENV = BUILD / "venv"
VENV_PYTHON = VENV / "bin" / "python"
RUNTIME = BUILD / "mpinit-init"          # the static MicroPython with the agent frozen in: /init


class BuildError(Exception):
    """A failure with a message for the user; build.py prints it and exits 1."""


def log(msg):
    print("build.py: %s" % msg, flush=True)


def warn(msg):
    print("build.py: warning: %s" % msg, file=sys.stderr, flush=True)


def run(argv, *, cwd=None, env=None, quiet=False, check=True, capture=False):
    """Run an external command, echoed as a copy-pasteable line. Tells "not found", a signal and an exit apart."""
    argv = [str(a) for a in argv]
    if not quiet:
        print("+ " + shlex.join(argv), flush=True)
    full_env = None
    if env:
        full_env = dict(os.environ)
        full_env.update(env)
    try:
        proc = subprocess.run(argv, cwd=cwd, env=full_env, text=True,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.STDOUT if capture else None)
    except FileNotFoundError:
        raise BuildError("%s: command not found" % argv[0])
    if check and proc.returncode != 0:
        if proc.returncode < 0:
            what = "killed by signal %d" % -proc.returncode
        else:
            what = "exited with status %d" % proc.returncode
        tail = ""
        if capture and proc.stdout:
            tail = "\n" + "\n".join(proc.stdout.splitlines()[-40:])
        raise BuildError("%s %s%s" % (shlex.join(argv), what, tail))
    return proc
