"""mpinit_agent.capture, the format: JSON round trip and checks, the framed console form (round trip, a serial log
with \\r\\n and noise, truncation, corrupt and missing lines), versions, the recorded probe ranges; the reader of
untrusted captures fuzzed with hypothesis (CPython only). Runs under MicroPython too (tests/mpy/run.py).

Capturing a machine (collect, writing to a filesystem, rd.mpinit.capture=) is in tests/test_replay.py, with the
fake machine."""

import json

import pytest

from mpinit_agent import capture, cmdline
from mpinit_agent.capture import CaptureError

MICROPYTHON = True

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # MicroPython
    given = None


def minimal(**extra):
    doc = {
        "format": "mpinit-capture", "version": 1, "compat": 1, "reason": "rescue", "stage": "medium",
        "uptime_ms": 1234, "kernel": {"release": "6.1.0-test", "version": "#1", "machine": "x86_64"},
        "cmdline": "root=live:LABEL=X", "config": None, "modules_table": None, "hooks": [],
        "modules": {"loaded": [], "failed": []}, "modaliases": [["devices/pci0000:00/x", "pci:v1d2"]],
        "memory": {"MemTotal": 1024, "MemAvailable": 512}, "mounts": ["proc /proc proc rw 0 0"],
        "timeline": [{"stage": "early", "start_ms": 0, "duration_ms": 3, "result": "ok"}],
        "kmsg": ["mpinit: early: start"], "failure": None,
        "used": {"medium": None, "medium_mount": None, "image": None, "image_size": 0, "root": None,
                 "new_root": "/sysroot", "inits": []},
        "devices": [{"name": "vda", "dev": [254, 0], "size": 4096, "lbs": 512, "removable": False, "ro": False,
                     "partition": None, "start": None, "parent": None, "partname": None, "holders": [],
                     "sysdir": "devices/virtual/block/vda", "driver": None, "module": None,
                     "probed": {"TYPE": "vfat"}, "ranges": [[0, "AAEC"], [512, 512]], "truncated": False}],
    }
    doc.update(extra)
    return doc


def test_round_trip_through_json():
    doc = minimal()
    assert capture.decode(capture.encode(doc)) == doc
    assert capture.load(capture.encode(doc)) == doc


def test_range_bytes_base64_and_zero_runs():
    d = minimal()["devices"][0]
    assert capture.range_bytes(d["ranges"][0]) == b"\x00\x01\x02"
    assert capture.range_bytes(d["ranges"][1]) == bytes(512)


def test_framed_round_trip_in_a_noisy_serial_log():
    data = capture.encode(minimal())
    lines = capture.frame_lines(data)
    assert all(len(line) < 80 for line in lines)
    noisy = ["[    3.14] virtio_blk virtio1: [vda] 8192 512-byte logical blocks", ">>> capture('console')"]
    for i, line in enumerate(lines):
        noisy.append(("[ 12.5] " if i % 7 == 3 else "") + line)   # a timestamp before a line is fine
        if i % 5 == 2:
            noisy.append("[    4.00] random: crng init done")
    log = "\r\n".join(noisy) + "\r\n>>> "
    assert capture.unframe(log) == data
    assert capture.load(log.encode()) == minimal()


def test_several_captures_in_one_log():
    a = capture.encode(minimal(reason="first"))
    b = capture.encode(minimal(reason="second"))
    log = "\n".join(capture.frame_lines(a) + ["noise"] + capture.frame_lines(b))
    assert capture.load(log)["reason"] == "second"
    assert capture.load(log, 0)["reason"] == "first"
    with pytest.raises(CaptureError, match="holds 2 complete"):
        capture.unframe(log, 5)


def test_a_log_cut_short_says_so():
    lines = capture.frame_lines(capture.encode(minimal()))
    with pytest.raises(CaptureError, match="no END line"):
        capture.unframe("\n".join(lines[:5]))


def test_corrupt_and_missing_lines_are_named():
    lines = capture.frame_lines(capture.encode(minimal()))
    assert len(lines) > 10
    broken = list(lines)
    body = broken[3]
    flip = "A" if body[12] != "A" else "B"
    broken[3] = body[:12] + flip + body[13:]       # one base64 character garbled: line 3
    del broken[6:8]                                  # lines 6 and 7 lost
    with pytest.raises(CaptureError, match="line 3 corrupt"):
        capture.unframe("\n".join(broken))
    with pytest.raises(CaptureError, match="lines 6-7 missing"):
        capture.unframe("\n".join(broken))


def test_a_line_repeated_intact_after_a_garbled_copy_is_used():
    lines = capture.frame_lines(capture.encode(minimal()))
    garbled = lines[2][:-1] + ("0" if lines[2][-1] != "0" else "1")
    log = "\n".join(lines[:2] + [garbled] + lines[2:])
    assert capture.unframe(log) == capture.encode(minimal())


def test_end_line_totals_are_checked():
    lines = capture.frame_lines(capture.encode(minimal()))
    lines[-1] = lines[-1].replace("crc=", "crc=0").replace("crc=0", "crc=", 1)
    end = lines[-1]
    i = end.find("crc=") + 4
    lines[-1] = end[:i] + ("0" if end[i] != "0" else "1") + end[i + 1:]
    with pytest.raises(CaptureError, match="END line says"):
        capture.unframe("\n".join(lines))


def test_no_frame_at_all():
    with pytest.raises(CaptureError, match="no framed capture"):
        capture.load(b"just a boot log\nmpinit: early: start\n")


def test_newer_format_is_refused_by_name_and_compatible_one_loads():
    with pytest.raises(CaptureError, match="is newer than this mpinit reads"):
        capture.decode(capture.encode(minimal(version=2, compat=2)))
    doc = capture.decode(capture.encode(minimal(version=3, compat=1, extra_key={"a": 1})))
    assert doc["version"] == 3 and doc["extra_key"] == {"a": 1}


@pytest.mark.parametrize("change, words", [
    ({"format": "something"}, "not an mpinit capture"),
    ({"cmdline": 5}, "'cmdline': want str"),
    ({"uptime_ms": True}, "want int"),
    ({"timeline": [{"stage": "x"}]}, "result: want str"),
    ({"modaliases": [["only-one"]]}, "want a device and its modalias"),
])
def test_bad_fields_are_named(change, words):
    with pytest.raises(CaptureError, match=words):
        capture.check(minimal(**change))


@pytest.mark.parametrize("dev_change, words", [
    ({"dev": [254]}, "major and minor"),
    ({"name": "../x"}, "bad or repeated device name"),
    ({"ranges": [[-1, "AAAA"]]}, "negative offset"),
    ({"ranges": [[0, 5.5]]}, "bytes: want str"),
    ({"lbs": 1000}, "logical block size"),
    ({"probed": {"TYPE": ["x"]}}, "probed.TYPE: want"),
])
def test_bad_devices_are_named(dev_change, words):
    doc = minimal()
    doc["devices"][0].update(dev_change)
    with pytest.raises(CaptureError, match=words):
        capture.check(doc)


def test_strict_base64():
    for bad in ("AAA", "AA!A", "A=AA", "AA=A"):
        with pytest.raises(CaptureError, match="base64"):
            capture._unb64(bad, "x")


def test_merge_ranges():
    assert capture.merge([(1024, 100), (0, 512), (400, 200), (5000, 10)]) == [(0, 600), (1024, 100), (5000, 10)]
    assert capture.merge([(0, 10), (70, 10)], gap=64) == [(0, 80)]
    assert capture.merge([(0, 10), (80, 10)], gap=64) == [(0, 10), (80, 10)]


def test_segments_record_zero_runs_by_length():
    out = []
    data = bytes(1024) + b"\x01" * 100 + bytes(600)
    capture._segments(out, 4096, data)
    assert out[0] == [4096, 1024]
    rebuilt = b"".join([capture.range_bytes(r) for r in out])
    assert rebuilt == data and [r[0] for r in out] == [4096, 5120, 5632][:len(out)]


def test_kmsg_lines_of_the_agent_only():
    assert capture.kmsg_text("6,12,3500000,-;mpinit: devices: start") == "[    3.500000] mpinit: devices: start"
    assert capture.kmsg_text("<3>mpinit: boot failed") == "mpinit: boot failed"
    assert capture.kmsg_text("6,13,1,-;virtio_blk virtio1: [vda]") is None
    assert capture.kmsg_text(" SUBSYSTEM=block") is None


def test_cmdline_capture_points():
    o = cmdline.parse("rd.mpinit.capture=LABEL=BUGS rd.mpinit.capture=console@pre-pivot "
                      "rd.mpinit.capture=UUID=1234-ABCD@root")
    assert o.capture == [("LABEL=BUGS", "failure"), ("console", "handoff"), ("UUID=1234-ABCD", "root")]
    with pytest.raises(cmdline.CmdlineError, match="unknown capture point"):
        cmdline.parse("rd.mpinit.capture=LABEL=BUGS@handof")
    with pytest.raises(cmdline.CmdlineError, match="device spec"):
        cmdline.parse("rd.mpinit.capture=BUGS=1")
    with pytest.raises(cmdline.CmdlineError, match="needs a value"):
        cmdline.parse("rd.mpinit.capture")


if given is not None:
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.binary(max_size=2000))
    def test_fuzz_load_raises_only_capture_error(data):
        try:
            capture.load(data)
        except CaptureError:
            pass

    _GOOD = capture.encode(minimal())
    _FRAMED = "\n".join(capture.frame_lines(_GOOD))

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.integers(0, len(_FRAMED) - 1), st.integers(0, 64), st.text(max_size=20))
    def test_fuzz_mutated_frames(at, cut, insert):
        text = _FRAMED[:at] + insert + _FRAMED[at + cut:]
        try:
            out = capture.load(text)
        except CaptureError:
            return
        assert out == minimal()     # a frame that passes every checksum is the original

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                        max_leaves=20),
           st.sampled_from(sorted(minimal()) + ["devices.0." + k for k in minimal()["devices"][0]]))
    def test_fuzz_fields_of_a_json_capture(value, key):
        doc = json.loads(json.dumps(minimal()))
        if key.startswith("devices.0."):
            doc["devices"][0][key[10:]] = value
        else:
            doc[key] = value
        try:
            capture.decode(json.dumps(doc).encode())
        except CaptureError:
            pass
