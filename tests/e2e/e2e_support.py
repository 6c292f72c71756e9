"""Fixtures shared by the end-to-end boots: QEMU + the Debian kernel, the test media (cached in build/e2e).

Not a conftest.py (a second module named `conftest` would shadow tests/conftest.py for `from conftest import`):
test modules import these fixtures by name.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def require_tools(*names):
    missing = [n for n in names if not (shutil.which(n) or shutil.which(n, path="/usr/sbin:/sbin"))]
    if missing:
        pytest.skip("missing tools: %s" % ", ".join(missing))


@pytest.fixture(scope="session")
def qemu_kernel(debian_kernel):
    """The Debian cloud kernel, when QEMU and the media tools are there (skips with the reason otherwise)."""
    require_tools("qemu-system-x86_64", "cpio", "busybox", "mksquashfs", "sgdisk", "sfdisk", "mkfs.vfat",
                  "mcopy", "mkfs.ext4", "xorriso", "modinfo")
    return debian_kernel


@pytest.fixture(scope="session")
def medium(qemu_kernel):
    """medium(name) -> mpinit.media.Medium, built once and cached across sessions."""
    from mpinit import media

    return media.ensure


def log_path(request, suffix="", logs="e2e"):
    """build/<logs>/logs/<test name><suffix>.log (its directory made) for a boot's console log."""
    from mpinit.paths import build_dir

    d = build_dir() / logs / "logs"
    d.mkdir(parents=True, exist_ok=True)
    return d / (request.node.name.replace("/", "_").replace("[", "-").replace("]", "") + suffix + ".log")


@pytest.fixture(scope="session")
def net_initrd(qemu_kernel, runtime_binary, tmp_path_factory):
    """`mpinit pack --modules generic-live,generic-net` with the real agent, once per session (skips until the
    runtime has the network agent built in)."""
    for mod in ("mpinit.cmd_pack", "mpinit_agent.net"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip("agent not built: %s is missing" % mod)
    work = tmp_path_factory.mktemp("netinitrd")
    probe = work / "micropython"   # the runtime is a plain MicroPython under a name not ending in "init"
    probe.symlink_to(Path(runtime_binary).resolve())
    check = subprocess.run([str(probe), "-c", "import mpinit_agent.net, mpinit_agent.http, _linux; _linux.socket"],
                           capture_output=True, text=True)
    if check.returncode != 0:
        pytest.skip("network agent not built into %s (python3 build.py runtime): %s"
                    % (runtime_binary, (check.stdout + check.stderr).strip()[-300:]))
    out = work / "initrd.img"
    env = dict(os.environ, MPINIT_RUNTIME=str(runtime_binary))
    proc = subprocess.run([sys.executable, "-m", "mpinit", "pack", "-o", str(out), "--init", str(runtime_binary),
                           "--kernel-modules", str(qemu_kernel.modules_dir), "--modules",
                           "generic-live,generic-net"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, "mpinit pack failed:\n%s\n%s" % (proc.stdout[-3000:], proc.stderr[-3000:])
    return out
