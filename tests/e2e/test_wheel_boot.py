"""The wheel from `python3 build.py wheel` in a fresh virtual environment: no checkout on its path, no MicroPython
source, no compiler, no MPINIT_RUNTIME. Its `mpinit pack` must find the runtime inside the package, the image it
packs must boot the test live medium to the live root in QEMU, and its pytest plugin must give a `fake_machine`.

Dependencies are installed with `pip install --no-index` from wheels of exactly the versions the build venv has
(pyproject.toml: pyfakefs; pytest for the plugin), fetched once with `pip download` from wherever pip is
configured to get packages (what `build.py`'s venv set-up uses) into build/wheel-deps/.
"""

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_tools
from mpinit import media, qemu
from mpinit.paths import build_dir

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent.parent

FAKE_MACHINE_TEST = '''
def test_my_live_stick_boots(fake_machine):
    m = fake_machine(cmdline="root=live:LABEL=MPLIVE", ram_mb=1024)
    squash = m.squashfs({"sbin/init": m.executable(b"#!/bin/sh\\n")})
    m.add_disk("sda", m.filesystem("vfat", label="MPLIVE", files={"live/filesystem.squashfs": squash}),
               removable=True)
    result = m.boot()
    assert result.handed_off and result.init == "/sbin/init", result.console
'''


def _deps_dir():
    """Wheels of pyfakefs and pytest (and what they need) at the build venv's versions."""
    want = ["%s==%s" % (name, importlib.metadata.version(name)) for name in ("pyfakefs", "pytest")]
    d = build_dir() / "wheel-deps"
    have = {p.name.split("-")[0].lower() + "==" + p.name.split("-")[1] for p in d.glob("*.whl")}
    if not all(w.lower() in have for w in want):
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:", "--dest",
                               str(d)] + want, capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip("cannot get wheels of %s: %s" % (", ".join(want), proc.stderr.strip()[-500:]))
    return d, want


@pytest.fixture(scope="module")
def wheel_venv(runtime_binary, tmp_path_factory):
    """(venv dir, the wheel) with the wheel installed."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from buildsys import wheel

    work = tmp_path_factory.mktemp("wheel")
    whl = wheel.build(runtime_binary, work / "dist")
    deps, want = _deps_dir()
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)   # on the base interpreter: empty
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(deps), str(whl)]
                   + want, check=True)
    return venv, whl


def _clean_env(tmp_path):
    """No MPINIT_RUNTIME, no build dir of ours, no checkout on the path, no compiler in reach."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MPINIT_", "PYTHON", "VIRTUAL_ENV"))}
    env["MPINIT_BUILD_DIR"] = str(tmp_path / "empty-build")
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    return env


def test_wheel_packs_and_boots(wheel_venv, debian_kernel, tmp_path):
    require_tools("qemu-system-x86_64")
    venv, whl = wheel_venv
    env = _clean_env(tmp_path)
    py = str(venv / "bin" / "python")
    where = subprocess.run([py, "-c", "import mpinit, mpinit.paths; print(mpinit.__file__); "
                            "print(mpinit.paths.runtime())"], env=env, cwd=tmp_path, capture_output=True,
                           text=True, check=True).stdout.split()
    assert where[0].startswith(str(venv)) and where[1].startswith(str(venv)), where   # not the checkout's
    assert where[1].endswith("mpinit/runtime/mpinit-init")
    initrd = tmp_path / "initrd.img"
    r = subprocess.run([str(venv / "bin" / "mpinit"), "pack", "-o", str(initrd), "--kernel-modules",
                        str(debian_kernel.modules_dir), "--modules", "generic-live"],
                       env=env, cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    from mpinit import cpio

    tree = cpio.merged(cpio.read_image(initrd.read_bytes()))
    assert tree["init"].data == Path(where[1]).read_bytes()
    medium = media.ensure("gpt-vfat")
    boot = qemu.boot(debian_kernel.vmlinuz, initrd, disks=[medium.path], append="root=live:LABEL=%s" % medium.label,
                     timeout_s=240, log_path=tmp_path / "console.log")
    assert boot.ok, boot.output[-4000:]
    assert boot.marker_fields()["rootfs"] == "overlay"


def test_wheel_pytest_plugin(wheel_venv, tmp_path):
    venv, _ = wheel_venv
    (tmp_path / "test_mine.py").write_text(FAKE_MACHINE_TEST)
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "test_mine.py"], env=_clean_env(tmp_path), cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]
