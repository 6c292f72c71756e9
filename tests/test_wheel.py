"""buildsys/wheel.py: the wheel's layout, metadata and RECORD read back with zipfile; mpinit.paths finding the
runtime a wheel carries. Installing the wheel in a fresh venv and booting what it packs is tests/e2e/test_wheel_boot.py.
"""

import base64
import csv
import hashlib
import io
import stat
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from buildsys import wheel  # noqa: E402
from buildsys.common import BuildError  # noqa: E402


def fake_runtime(path, machine=62):
    data = bytearray(b"\x7fELF\x02\x01\x01" + bytes(200))
    data[18:20] = machine.to_bytes(2, "little")
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def built(tmp_path):
    rt = fake_runtime(tmp_path / "mpinit-init")
    return wheel.build(rt, tmp_path / "dist"), rt


def test_name_and_tags(built):
    path, _ = built
    assert path.name == ("mpinit-0.1.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64."
                         "musllinux_1_1_x86_64.whl")
    with zipfile.ZipFile(path) as z:
        text = z.read("mpinit-0.1.0.dist-info/WHEEL").decode()
    assert "Root-Is-Purelib: false\n" in text
    assert [line for line in text.splitlines() if line.startswith("Tag:")] == [
        "Tag: py3-none-manylinux_2_17_x86_64", "Tag: py3-none-manylinux2014_x86_64",
        "Tag: py3-none-musllinux_1_1_x86_64"]


def test_contents_runtime_and_sources(built):
    path, rt = built
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        info = z.getinfo(wheel.RUNTIME_IN_PACKAGE)
        assert z.read(wheel.RUNTIME_IN_PACKAGE) == rt.read_bytes()
        assert stat.S_IMODE(info.external_attr >> 16) == 0o755 and stat.S_ISREG(info.external_attr >> 16)
        for pkg in ("mpinit/cli.py", "mpinit/paths.py", "mpinit/testing/plugin.py", "mpinit_agent/main.py",
                    "mpinit/runtime/__init__.py"):
            assert pkg in names
        # every .py of the packages, nothing else of the checkout (no C sources, no build files, no tests)
        expected = {"mpinit/%s" % p.name for p in (ROOT / "host-tools/mpinit").glob("*.py")}
        assert expected <= set(names)
        assert not [n for n in names if n.endswith((".c", ".mk", ".pyc")) or n.startswith(("tests/", "build"))]
        assert len(names) == len(set(names))
        ep = z.read("mpinit-0.1.0.dist-info/entry_points.txt").decode()
        assert "[console_scripts]\nmpinit = mpinit.cli:main\n" in ep
        assert "[pytest11]\nmpinit = mpinit.testing.plugin" in ep
        md = z.read("mpinit-0.1.0.dist-info/METADATA").decode()
        assert "Name: mpinit\nVersion: 0.1.0\n" in md and "Requires-Dist: pyfakefs>=5.3\n" in md
        assert 'Requires-Dist: pytest>=7 ; extra == "test"' in md


def test_record_lists_every_file_with_its_hash(built):
    path, _ = built
    with zipfile.ZipFile(path) as z:
        rows = list(csv.reader(io.StringIO(z.read("mpinit-0.1.0.dist-info/RECORD").decode())))
        listed = {r[0] for r in rows}
        assert listed == set(z.namelist())
        for name, digest, size in rows:
            if name.endswith("RECORD"):
                assert digest == size == ""
                continue
            data = z.read(name)
            want = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert digest == want and int(size) == len(data), name


def test_reproducible(tmp_path):
    rt = fake_runtime(tmp_path / "mpinit-init")
    a = wheel.build(rt, tmp_path / "a").read_bytes()
    b = wheel.build(rt, tmp_path / "b").read_bytes()
    assert a == b


def test_refuses_a_runtime_of_another_cpu(tmp_path):
    rt = fake_runtime(tmp_path / "mpinit-init", machine=183)
    with pytest.raises(BuildError, match="not an x86_64 ELF program"):
        wheel.build(rt, tmp_path / "dist")
    with pytest.raises(BuildError, match="no runtime"):
        wheel.build(tmp_path / "none", tmp_path / "dist")
    assert not (tmp_path / "dist").exists() or not list((tmp_path / "dist").iterdir())   # nothing half-written


def test_paths_prefers_built_then_packaged(tmp_path, monkeypatch):
    from mpinit import paths

    monkeypatch.delenv("MPINIT_RUNTIME", raising=False)
    monkeypatch.setenv("MPINIT_BUILD_DIR", str(tmp_path / "build"))
    packaged = tmp_path / "pkg" / "runtime" / "mpinit-init"
    monkeypatch.setattr(paths, "PACKAGED_RUNTIME", packaged)
    assert paths.runtime() == tmp_path / "build" / "mpinit-init"     # neither: the build path, for the message
    packaged.parent.mkdir(parents=True)
    packaged.write_bytes(b"x")
    assert paths.runtime() == packaged                              # a wheel install: the packaged one
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "mpinit-init").write_bytes(b"y")
    assert paths.runtime() == tmp_path / "build" / "mpinit-init"    # a checkout's own build wins
    monkeypatch.setenv("MPINIT_RUNTIME", "/x/y")
    assert paths.runtime() == Path("/x/y")
