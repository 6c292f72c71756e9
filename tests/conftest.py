"""Shared fixtures: the built runtime and a real Debian kernel. Both skip with the reason when unavailable."""

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def runtime_binary():
    """build/mpinit-init (MPINIT_RUNTIME overrides); `python3 build.py test` always builds it first."""
    from mpinit.paths import runtime

    path = runtime()
    if not path.exists():
        pytest.skip("%s not built: run `python3 build.py runtime`" % path)
    return path


@pytest.fixture(scope="session")
def arm64_runtime():
    """(argv prefix, path) of the arm64 /init (build.py runtime --arch arm64; MPINIT_RUNTIME_ARM64 overrides),
    run through qemu-aarch64 (qemu-user) on another machine: prefix + [path, ...] runs it."""
    from mpinit import arch
    from mpinit.paths import runtime
    from mpinit.runner import ToolError

    path = runtime("arm64")
    if not path.exists():
        pytest.skip("%s not built: run `python3 build.py runtime --arch arm64`" % path)
    try:
        prefix = arch.run_prefix(path)
    except ToolError as e:
        pytest.skip("cannot run the arm64 runtime here: %s" % e)
    return prefix, path


def _fetched_kernel(ensure, what):
    """ensure() (an mpinit.kernel fetcher), or a skip naming `what` when it cannot be fetched here."""
    from mpinit.runner import ToolError

    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        pytest.skip("apt-get/dpkg-deb not available to fetch the Debian kernel")
    try:
        return ensure()
    except ToolError as e:
        pytest.skip("%s unavailable: %s" % (what, e))


@pytest.fixture(scope="session")
def debian_kernel():
    """The unpacked Debian cloud kernel (vmlinuz, modules without modules.dep), fetched once into build/kernel."""
    from mpinit import kernel

    return _fetched_kernel(kernel.ensure, "Debian kernel")


@pytest.fixture(scope="session")
def debian_generic_kernel():
    """Debian's generic kernel for PCs (mpinit.kernel.ensure_generic: it has ntfs3, the cloud kernel has not),
    fetched once into build/kernel-generic."""
    from mpinit import kernel

    return _fetched_kernel(kernel.ensure_generic, "Debian generic kernel")


def require_tools(*names):
    """Skip the calling test unless every named external tool is on PATH (CI installs them all)."""
    missing = [n for n in names if not (shutil.which(n) or shutil.which(n, path="/usr/sbin:/sbin"))]
    if missing:
        pytest.skip("missing tools: %s" % ", ".join(missing))
