"""mpinit.kernel.ensure_generic's choice of meta package (no download: ensure() is replaced)."""

import pytest

from mpinit import kernel
from mpinit.runner import ToolError


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
