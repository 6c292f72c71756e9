"""Network boot on the real kernel (issue 11 part 1): the Debian cloud kernel, `mpinit pack --modules
generic-live,generic-net` with the real agent, QEMU's user-mode network confined to the host's loopback
(`-netdev user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:80-tcp:127.0.0.1:PORT -device virtio-net-pci`, from
mpinit.qemu.net_args, nothing else), and nginx on 127.0.0.1:PORT serving the test live root (tests/e2e/
webserver.py). QEMU's built-in DHCP server answers the agent's DHCP client; with restrict=on it gives no router
and no DNS server, so the URLs use the IP (name resolution is tested against the fake resolver in test_net.py).

The boots: the live root over HTTP with its pinned digest (and DHCP at debug level, which logs the server's raw
replies), a wrong pinned digest (a failure showing both values, nothing mounted), the server dropping the
connection mid-transfer (the agent resumes with Range), and no server at all (a clear failure naming the URL).
"""

import hashlib
import shutil

import pytest

from e2e_support import log_path, medium, net_initrd, qemu_kernel  # noqa: F401 (fixtures)
from mpinit import media, qemu
from webserver import dropping_proxy, web_server  # noqa: F401 (fixture)

URL = "http://10.0.2.100/live/filesystem.squashfs"
NO_SHELL = "rd.shell=0 panic=1"     # a failure reboots at once; -no-reboot turns that into QEMU's exit
# The failure tests' HTTP knobs (rd.live.http.timeout= / .retries=): the defaults (10 s to an answer, 30 s of
# stall, 5 attempts with 1+2+4+8 s pauses) are for real networks and made these boots take 40-70 s.
FAST_HTTP = "rd.live.http.timeout=2 rd.live.http.retries=2"
MEMORY_MB = 384


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A directory to serve: live/filesystem.squashfs (the e2e live root) and its .sha256; (dir, sha256)."""
    d = tmp_path_factory.mktemp("www")
    (d / "live").mkdir()
    image = media.squashfs(media.cache_dir(), "root")
    shutil.copyfile(image, d / "live" / "filesystem.squashfs")
    digest = hashlib.sha256((d / "live" / "filesystem.squashfs").read_bytes()).hexdigest()
    (d / "live" / "filesystem.squashfs.sha256").write_text("%s  filesystem.squashfs\n" % digest)
    return d, digest


@pytest.fixture
def netboot(request, qemu_kernel, net_initrd):  # noqa: F811
    def run(port, append, timeout_s=150, **kw):
        kw.setdefault("stop_on", ">>> ")
        return qemu.boot(qemu_kernel.vmlinuz, net_initrd, append=append, memory_mb=MEMORY_MB,
                         timeout_s=timeout_s, log_path=log_path(request),
                         extra_args=qemu.net_args(port), **kw)
    return run


def agent_lines(r, *words):
    return [line for line in r.lines("mpinit:") if all(w.lower() in line.lower() for w in words)]


def failure_report(r):
    text = r.output
    at = text.lower().find("boot failed")
    assert at >= 0, text[-4000:]
    return text[at:]


@pytest.mark.e2e
def test_http_live_root_with_dhcp_and_pinned_digest(netboot, web_server, served):  # noqa: F811
    root, digest = served
    server = web_server(root)
    r = netboot(server.port, "root=live:%s ip=dhcp rd.live.sha256=%s checksum=y debug" % (URL, digest))
    assert r.ok, r.output[-5000:]
    facts = r.marker_fields()
    assert facts["rootfs"] == "overlay" and facts["rw"] == "yes", facts
    net = agent_lines(r, "network:", "10.0.2.15")
    assert net, "\n".join(r.lines("mpinit:"))
    assert agent_lines(r, "sha256 of", "matches rd.live.sha256="), "\n".join(r.lines("mpinit:"))
    assert "GET /live/filesystem.squashfs 200" in server.log()
    assert "GET /live/filesystem.squashfs.sha256 200" in server.log()


@pytest.fixture(scope="module")
def served_forms(served, tmp_path_factory):
    """The other URL forms' trees: archiso's layout with its .sha512, and the e2e ISO (casper's url=)."""
    root, digest = served
    image = root / "live" / "filesystem.squashfs"
    arch = root / "arch" / "x86_64"
    arch.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(image, arch / "airootfs.sfs")
    (arch / "airootfs.sha512").write_text("%s  airootfs.sfs\n" % hashlib.sha512(image.read_bytes()).hexdigest())
    return root


@pytest.mark.e2e
@pytest.mark.parametrize("form", ["archiso_http_srv", "fetch", "url-iso"])
def test_url_forms(form, netboot, web_server, served_forms, medium):  # noqa: F811
    root = served_forms
    if form == "url-iso":
        iso = root / "live.iso"
        if not iso.exists():
            shutil.copyfile(medium("iso").path, iso)
    params = {
        "archiso_http_srv": "archiso_http_srv=http://10.0.2.100/ archisobasedir=arch checksum=y",
        "fetch": "boot=live fetch=%s" % URL,
        "url-iso": "boot=casper url=http://10.0.2.100/live.iso",
    }[form]
    server = web_server(root)
    r = netboot(server.port, "%s ip=dhcp" % params)
    assert r.ok, r.output[-5000:]
    assert r.marker_fields()["rootfs"] == "overlay"
    if form == "archiso_http_srv":
        assert agent_lines(r, "sha512 of", "airootfs.sha512"), "\n".join(r.lines("mpinit:"))
        assert "GET /arch/x86_64/airootfs.sfs 200" in server.log()
    if form == "url-iso":
        assert "GET /live.iso 200" in server.log()
        assert agent_lines(r, "medium:", "/run/mpinit/iso/"), "\n".join(r.lines("mpinit:"))


@pytest.mark.e2e
def test_wrong_pinned_digest_fails_before_anything_is_mounted(netboot, web_server, served):  # noqa: F811
    root, digest = served
    server = web_server(root)
    wrong = hashlib.sha256(b"not the image").hexdigest()
    r = netboot(server.port, "root=live:%s ip=dhcp rd.live.sha256=%s %s" % (URL, wrong, NO_SHELL))
    assert not r.ok
    report = failure_report(r)
    assert "stage 'medium'" in report and wrong in report and digest in report, report[-3000:]
    assert "squashfs" not in " ".join(l for l in r.output.splitlines() if "mpinit: root:" in l)
    assert not r.timed_out


@pytest.mark.e2e
def test_dropped_connection_is_resumed_with_range(netboot, web_server, served):  # noqa: F811
    root, digest = served
    server = web_server(root)
    size = (root / "live" / "filesystem.squashfs").stat().st_size
    proxy = dropping_proxy(server, size // 3, times=1)
    r = netboot(proxy.port, "root=live:%s ip=dhcp rd.live.sha256=%s %s" % (URL, digest, FAST_HTTP))
    assert r.ok, r.output[-5000:]
    assert proxy.dropped == 1
    assert "range=\"bytes=" in server.log(), server.log()
    assert agent_lines(r, "medium:", "resumed 1 times"), "\n".join(r.lines("mpinit:"))


@pytest.mark.e2e
def test_no_server_is_a_clear_failure(netboot, web_server, tmp_path):  # noqa: F811
    # QEMU's guestfwd connects to 127.0.0.1:PORT when it starts (nothing listening: QEMU refuses to start), so
    # "no server" is a listener that answers nothing: every connection is closed before a byte of response.
    server = web_server(tmp_path)
    dead = dropping_proxy(server, 0, times=1000)
    # dracut's network knobs too: the real agent must take them (a bad parameter would fail another stage).
    r = netboot(dead.port, "root=live:%s ip=dhcp rd.net.timeout.carrier=10 rd.net.timeout.dhcp=10 %s %s"
                % (URL, NO_SHELL, FAST_HTTP))
    assert not r.ok
    report = failure_report(r)
    assert "stage 'medium'" in report and URL in report, report[-3000:]
    assert "giving up after 3 attempts" in report and "no answer within 2000 ms" in report, report[-3000:]
    assert not r.timed_out
