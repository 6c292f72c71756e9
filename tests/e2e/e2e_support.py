"""Fixtures shared by the end-to-end boots: QEMU + the Debian kernel, the test media (cached in build/e2e).

Not a conftest.py (a second module named `conftest` would shadow tests/conftest.py for `from conftest import`):
test modules import these fixtures by name.
"""

import shutil

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
