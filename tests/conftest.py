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
def debian_kernel():
    """The unpacked Debian cloud kernel (vmlinuz, modules without modules.dep), fetched once into build/kernel."""
    from mpinit import kernel
    from mpinit.runner import ToolError

    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        pytest.skip("apt-get/dpkg-deb not available to fetch the Debian kernel")
    try:
        return kernel.ensure()
    except ToolError as e:
        pytest.skip("Debian kernel unavailable: %s" % e)


def require_tools(*names):
    """Skip the calling test unless every named external tool is on PATH (CI installs them all)."""
    missing = [n for n in names if not (shutil.which(n) or shutil.which(n, path="/usr/sbin:/sbin"))]
    if missing:
        pytest.skip("missing tools: %s" % ", ".join(missing))
