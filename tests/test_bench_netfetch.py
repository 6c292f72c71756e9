"""The network-download benchmark's code (bench/mpbench/netfetch.py, bench/peer/netfetch.sh): console parsing,
the peer image, the options. No timing is asserted: the figures are the benchmark's output."""

import importlib.util
import socket
import subprocess
import sys
import urllib.request

import pytest

from conftest import ROOT, require_tools

sys.path.insert(0, str(ROOT / "bench"))

from mpbench import netfetch, parse, peer  # noqa: E402
from mpinit import cpio  # noqa: E402


def test_ours_rate_is_the_last_completed_progress_line():
    out = ("mpinit: fetch:  12% 8/64 MiB 18.0 MB/s ETA 3 s\rmpinit: fetch:  80% 51/64 MiB 20.1 MB/s ETA 0 s"
           "\rmpinit: fetch: 100% 64/64 MiB 21.4 MB/s done\n[ 9.1] mpinit: medium: ...\n")
    assert parse.progress_mbps(out, "fetch") == pytest.approx(21.4)
    with pytest.raises(parse.ParseError, match="boot 1: no completed 'mpinit: fetch: 100%"):
        parse.progress_mbps("mpinit: fetch:  50% 32/64 MiB 20.0 MB/s ETA 1 s\n", "fetch", "boot 1")


def test_peer_rate_is_size_over_the_uptime_difference():
    out = "[  5.1] bbinit: netfetch: fetched 67108864 bytes in 4.20 .. 7.40 s\n"
    assert parse.peer_fetch_mbps(out) == pytest.approx(67108864 / 3.2 / 1e6)
    with pytest.raises(parse.ParseError, match="no measurable time"):
        parse.peer_fetch_mbps("bbinit: netfetch: fetched 10 bytes in 4.20 .. 4.20 s", "b")
    with pytest.raises(parse.ParseError, match="no 'bbinit: netfetch: fetched"):
        parse.peer_fetch_mbps("bbinit: FAILED: wget", "b")


def test_the_scripts_log_line_is_what_the_parser_reads():
    line = next(x.strip() for x in netfetch.script().split("\n") if x.strip().startswith('log "netfetch: fetched'))
    text = line.split('"', 2)[1].replace("$size", "1000000").replace("$t0", "1.00").replace("$t1", "1.50")
    assert parse.peer_fetch_mbps("bbinit: " + text) == pytest.approx(2.0)


def test_the_script_runs_only_shipped_applets_and_is_valid_ash():
    used = peer.commands(netfetch.script())
    assert used - set(netfetch.APPLETS) - set(peer.APPLETS) - peer.SHELL_WORDS == set()
    assert "wget" in used and "ip" in used
    require_tools("busybox")
    proc = subprocess.run(["busybox", "sh", "-n", str(netfetch.SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_peer_image_has_the_script_and_the_network_applets(tmp_path):
    bb = tmp_path / "busybox"
    bb.write_bytes(b"bb")
    entries = {e.name: e for m in cpio.read_image(netfetch.peer_image(bb, None, "none")) for e in m.entries}
    assert entries["init"].data == netfetch.SCRIPT.read_bytes()
    for applet in netfetch.APPLETS:
        assert entries["bin/" + applet].islnk() and entries["bin/" + applet].data == b"busybox"


def test_server_serves_through_its_relay_on_the_loopback(tmp_path):
    (tmp_path / "live").mkdir()
    (tmp_path / "live" / "filesystem.squashfs").write_bytes(b"hsqs" + b"x" * 1000)
    s = netfetch.Server(tmp_path)
    try:
        assert s.relay.upstream_port == s.httpd.server_address[1] and s.httpd.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen("http://127.0.0.1:%d/live/filesystem.squashfs" % s.port, timeout=10) as r:
            assert r.read() == b"hsqs" + b"x" * 1000
    finally:
        s.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", s.port), timeout=2).close()


def _run_module():
    spec = importlib.util.spec_from_file_location("bench_run_net", ROOT / "bench" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_options(capsys):
    run = _run_module()
    a = run.parse_args([])
    assert (a.net_runs, a.net_mb) == (5, 256)
    q = run.parse_args(["--quick"])
    assert (q.net_runs, q.net_mb) == (1, 64)
    assert run.parse_args(["--runs", "0", "--net-runs", "1", "--net-mb", "64"]).net_runs == 1
    for argv, word in ((["--net-mb", "2"], "--net-mb 2"), (["--net-runs", "-1"], "--net-runs -1")):
        with pytest.raises(SystemExit):
            run.parse_args(argv)
        assert word in capsys.readouterr().err
