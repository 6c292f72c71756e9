"""The one way the host tools run external programs: echoed as a copy-pasteable line, failures explained."""

import shlex
import shutil
import subprocess


class ToolError(Exception):
    """An external tool failed or is missing; the message names it and says how."""


# Where a tool is looked for when PATH lacks it: a user's PATH often has no sbin directories (mkfs.*, cryptsetup,
# mdadm live there), or is minimal (a kernel hook's environment).
FALLBACK_PATH = "/usr/sbin:/sbin:/usr/bin:/bin:/usr/lib/syslinux"


def find_tool(name, package=None):
    """The path of program `name`; ToolError naming it (and its Debian package) when it is not installed."""
    path = shutil.which(name) or shutil.which(name, path=FALLBACK_PATH)
    if not path:
        hint = " (Debian package %s)" % package if package else ""
        raise ToolError("%s: not found on PATH%s" % (name, hint))
    return path


def run(argv, *, echo=True, capture=False, cwd=None, env=None, input=None, check=True, timeout=None):
    argv = [str(a) for a in argv]
    if echo:
        print("+ " + shlex.join(argv), flush=True)
    try:
        proc = subprocess.run(argv, cwd=cwd, env=env, input=input, timeout=timeout,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.PIPE if capture else None)
    except FileNotFoundError:
        raise ToolError("%s: command not found" % argv[0])
    if check and proc.returncode != 0:
        what = ("killed by signal %d" % -proc.returncode if proc.returncode < 0
                else "exited with status %d" % proc.returncode)
        detail = ""
        if capture and proc.stderr:
            detail = ": " + proc.stderr.decode(errors="replace").strip()[-2000:]
        raise ToolError("%s %s%s" % (shlex.join(argv), what, detail))
    return proc
