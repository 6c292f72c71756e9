"""mpinit.kernel and the one Debian package fetch it shares with the rest (mpinit.arch.fetch_deb): against a fake
apt (no download), the package names asked for per architecture, the caches reused and replaced; and
ensure_generic's choice of meta package (ensure() replaced)."""

import json
import subprocess
from pathlib import Path

import pytest

from mpinit import arch as archmod
from mpinit import kernel, runner
from mpinit.runner import ToolError

KVER = "6.1.0-99-cloud-amd64"


class FakeApt:
    """apt-cache depends / apt-get download / dpkg-deb -x, as far as fetch_deb and ensure use them. `debs`: apt
    name -> (deb file name, {path in the package: bytes}); a name not in it fails like apt does."""

    def __init__(self, debs, depends=None):
        self.debs, self.depends, self.calls = debs, depends or {}, []

    def __call__(self, argv, cwd=None, capture=False, check=True, echo=True, **kw):
        argv = [str(a) for a in argv]
        self.calls.append(argv[:3])
        if argv[:2] == ["apt-cache", "depends"]:
            dep = self.depends.get(argv[2])
            out = ("%s\n  Depends: %s\n" % (argv[2], dep)) if dep else ""
            return subprocess.CompletedProcess(argv, 0 if dep else 100, out.encode(), b"")
        if argv[:2] == ["apt-get", "download"]:
            if argv[2] not in self.debs:
                return subprocess.CompletedProcess(argv, 100, b"", b"E: Unable to locate package " + argv[2].encode())
            deb, _files = self.debs[argv[2]]
            (cwd / deb).write_text(argv[2])
            return subprocess.CompletedProcess(argv, 0, b"", b"")
        if argv[:2] == ["dpkg-deb", "-x"]:
            name = open(argv[2]).read()
            for rel, data in self.debs[name][1].items():
                path = Path(argv[3]) / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            return subprocess.CompletedProcess(argv, 0, b"", b"")
        raise AssertionError("unexpected command %s" % argv)


def bzimage():
    data = bytearray(0x400)
    data[0x202:0x206] = b"HdrS"   # Documentation/arch/x86/boot.rst: the setup header's magic
    return bytes(data)


def cloud_kernel_debs(name="linux-image-%s" % KVER):
    return {name: ("%s_6.1.999-1_amd64.deb" % name.partition(":")[0],
                   {"boot/vmlinuz-%s" % KVER: bzimage(), "boot/config-%s" % KVER: b"CONFIG_X=y\n",
                    "lib/modules/%s/kernel/a.ko" % KVER: b"\x7fELF"})}


@pytest.fixture
def on_x86_64(monkeypatch):
    monkeypatch.setattr(archmod, "native", lambda: archmod.ARCHES["x86_64"])


def test_apt_names_a_foreign_package_with_its_architecture(on_x86_64):
    assert archmod.apt_name("busybox-static", "x86_64") == "busybox-static"
    assert archmod.apt_name("busybox-static", "arm64") == "busybox-static:arm64"


def test_fetch_deb_downloads_once_and_replaces_the_cache_for_another_package(tmp_path, monkeypatch, on_x86_64):
    apt = FakeApt({"busybox-static:arm64": ("busybox-static_1.36_arm64.deb", {"bin/busybox": b"one"}),
                   "other:arm64": ("other_2_arm64.deb", {"bin/other": b"two"})})
    monkeypatch.setattr(runner, "run", apt)
    root = archmod.fetch_deb("busybox-static", "arm64", tmp_path)
    assert root == tmp_path / "root" and (root / "bin" / "busybox").read_bytes() == b"one"
    assert apt.calls == [["apt-get", "download", "busybox-static:arm64"], ["dpkg-deb", "-x", str(
        tmp_path / "busybox-static_1.36_arm64.deb")]]
    assert archmod.fetch_deb("busybox-static", "arm64", tmp_path) == root and len(apt.calls) == 2
    archmod.fetch_deb("other", "arm64", tmp_path)
    assert (root / "bin" / "other").read_bytes() == b"two" and not (root / "bin" / "busybox").exists()
    assert [p.name for p in tmp_path.glob("*.deb")] == ["other_2_arm64.deb"]
    assert json.loads((tmp_path / "fetched.json").read_text())["package"] == "other:arm64"


def test_fetch_deb_failures_name_the_package(tmp_path, monkeypatch, on_x86_64):
    monkeypatch.setattr(runner, "run", FakeApt({}))
    with pytest.raises(ToolError, match=r"apt-get download busybox-static:arm64 failed \(apt must know the "
                                        r"architecture: dpkg --add-architecture arm64 .*Unable to locate"):
        archmod.fetch_deb("busybox-static", "arm64", tmp_path)
    with pytest.raises(ToolError) as e:
        archmod.fetch_deb("busybox-static", "x86_64", tmp_path)
    assert "apt-get download busybox-static failed: E: Unable" in str(e.value) and "architecture" not in str(e.value)
    assert not (tmp_path / "fetched.json").exists() and not (tmp_path / "root").exists()


def test_ensure_resolves_fetches_and_then_reuses_the_cache_without_apt(tmp_path, monkeypatch, on_x86_64):
    apt = FakeApt(cloud_kernel_debs(), depends={"linux-image-cloud-amd64": "linux-image-%s" % KVER})
    monkeypatch.setattr(runner, "run", apt)
    monkeypatch.setattr(kernel, "run", apt)
    k = kernel.ensure(cache=tmp_path)
    assert k.package == "linux-image-" + KVER and k.kver == KVER
    assert k.vmlinuz == tmp_path / "root" / "boot" / ("vmlinuz-" + KVER) and k.modules_dir.is_dir()
    assert apt.calls[0] == ["apt-cache", "depends", "linux-image-cloud-amd64"]
    assert ["apt-get", "download", "linux-image-" + KVER] in apt.calls
    n = len(apt.calls)
    assert kernel.ensure(cache=tmp_path) == k and len(apt.calls) == n   # cached: apt is not asked


def test_ensure_asks_for_another_architecture_s_kernel_by_its_qualified_name(tmp_path, monkeypatch, on_x86_64):
    apt = FakeApt({}, depends={"linux-image-cloud-arm64:arm64": "linux-image-6.1.0-99-cloud-arm64:arm64"})
    monkeypatch.setattr(runner, "run", apt)
    monkeypatch.setattr(kernel, "run", apt)
    with pytest.raises(ToolError, match=r"download linux-image-6.1.0-99-cloud-arm64:arm64 failed \(apt must know"):
        kernel.ensure(cache=tmp_path, arch="arm64")


def test_ensure_refuses_a_package_holding_another_architecture_s_kernel(tmp_path, monkeypatch, on_x86_64):
    debs = cloud_kernel_debs()
    debs["linux-image-" + KVER][1]["boot/vmlinuz-" + KVER] = bytes(0x38) + b"ARM\x64" + bytes(0x100)
    apt = FakeApt(debs, depends={"linux-image-cloud-amd64": "linux-image-%s" % KVER})
    monkeypatch.setattr(runner, "run", apt)
    monkeypatch.setattr(kernel, "run", apt)
    with pytest.raises(ToolError, match="holds a arm64 kernel, not x86_64"):
        kernel.ensure(cache=tmp_path)
    assert not (tmp_path / "kernel.json").exists()


def test_an_unknown_meta_package_is_a_clear_error(tmp_path, monkeypatch, on_x86_64):
    apt = FakeApt({})
    monkeypatch.setattr(kernel, "run", lambda argv, **kw: apt(argv, **kw) if argv[0] == "apt-cache" else
                        apt.calls.append(argv))
    with pytest.raises(ToolError, match="cannot resolve linux-image-nope to a kernel package"):
        kernel.ensure(cache=tmp_path, meta="linux-image-nope")
    assert ["apt-get", "update", "-q"] in apt.calls   # a fresh machine's package lists are fetched once


def test_generic_takes_the_first_meta_package_apt_knows(tmp_path, monkeypatch):
    asked = []

    def ensure(cache=None, meta=None, arch="x86_64"):
        asked.append((cache, meta))
        if meta == kernel.GENERIC_META_PACKAGES[0]:
            raise ToolError("cannot resolve %s" % meta)
        return "kernel of %s" % meta

    monkeypatch.setattr(kernel, "ensure", ensure)
    assert kernel.ensure_generic(tmp_path) == "kernel of %s" % kernel.GENERIC_META_PACKAGES[1]
    assert asked == [(tmp_path, m) for m in kernel.GENERIC_META_PACKAGES[:2]]


def test_generic_names_every_meta_package_when_none_resolves(tmp_path, monkeypatch):
    def ensure(cache=None, meta=None, arch="x86_64"):
        raise ToolError("cannot resolve %s" % meta)

    monkeypatch.setattr(kernel, "ensure", ensure)
    with pytest.raises(ToolError) as e:
        kernel.ensure_generic(tmp_path)
    for meta in kernel.GENERIC_META_PACKAGES:
        assert meta in str(e.value)


def test_generic_is_cached_apart_from_the_cloud_kernel(monkeypatch):
    seen = []
    monkeypatch.setattr(kernel, "ensure", lambda cache=None, meta=None, arch="x86_64": seen.append(cache) or 1)
    kernel.ensure_generic()
    assert seen[0].name == "kernel-generic"
