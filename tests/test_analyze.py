"""mpinit analyze: the boot read back from real console logs (excerpts of e2e boots on the Debian cloud kernel in
tests/data/), kernel log dumps, and the agent's timeline.json; the table, the SVG and the command."""

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpinit import analyze, cli

DATA = Path(__file__).with_name("data")
LIVE = DATA / "console-live-boot.log"            # test_live_by_spec[LABEL=MPLIVE]: a live boot to the root
FAILED = DATA / "console-ext4-failed.log"        # test_ext4_bad_geometry...: the root stage fails, rd.shell=0


def spans(boot, kind):
    return [(s.name, s.start_ms, s.duration_ms) for s in boot.of(kind)]


def test_live_console_log():
    boot = analyze.load(LIVE)
    assert boot.form == "console log" and boot.failure is None
    assert boot.init_ms == pytest.approx(1678.909)
    stages = {s.name: s for s in boot.of("stage")}
    assert list(stages) == ["early", "cmdline", "modules", "devices", "medium", "toram", "root", "handoff"]
    # "[    2.351590] mpinit: modules: 10 loaded (10 by coldplug), 0 failed (587 ms)", started at 1.764280
    assert stages["modules"].start_ms == pytest.approx(1764.28) and stages["modules"].duration_ms == 587
    # early has no start line (written before /dev/kmsg exists): its end minus its duration
    assert stages["early"].start_ms == pytest.approx(1760.748 - 14)
    assert stages["handoff"].result == "exec of the root's init" and not stages["handoff"].failed
    kernel = boot.of("kernel")[0]
    assert (kernel.start_ms, kernel.duration_ms) == (0.0, pytest.approx(1678.909))
    assert boot.of("init")[0].duration_ms == pytest.approx(1746.748 - 1678.909)
    mods = [s.name for s in boot.of("module")]
    assert mods == ["vfat", "nls_cp437", "nls_ascii", "nls_iso8859_1", "nls_utf8", "squashfs", "overlay"]
    assert all(s.duration_ms is None for s in boot.of("module"))   # the log gives instants only
    assert boot.of("wait") == []         # "(2 block devices, 0 ms)": the medium was there at once


def test_failed_console_log_and_its_wait():
    boot = analyze.load(FAILED)
    assert boot.failure == "stage 'root': cannot mount /dev/vda"
    root = [s for s in boot.of("stage") if s.name == "root"][0]
    assert root.failed and root.start_ms == pytest.approx(19058.907)
    assert root.duration_ms == pytest.approx(19328.316 - 19058.907)
    assert spans(boot, "wait") == [("root/medium device", pytest.approx(19031.968 - 44), 44.0)]
    assert "network" in [s.name for s in boot.of("stage")]
    text = analyze.table(boot)
    assert "FAILED in stage 'root': cannot mount /dev/vda" in text
    assert re.search(r"kernel to /init:\s+10007\.5 ms", text)


def _as_kmsg(console_text):
    """The console excerpt's kernel lines as /dev/kmsg records (what `cat /dev/kmsg` on the booted system shows),
    each with a dictionary continuation line, and the same as `dmesg -r` output."""
    kmsg, raw = [], []
    for n, line in enumerate(console_text.splitlines()):
        m = re.match(r"\[\s*(\d+)\.(\d{6})\] (.*)", line)
        if m:
            usec = int(m.group(1)) * 1000000 + int(m.group(2))
            prio = 14 if m.group(3).startswith("mpinit:") else 6
            kmsg.append("%d,%d,%d,-;%s\n SUBSYSTEM=test" % (prio, n, usec, m.group(3)))
            raw.append("<%d>%s" % (prio, line))
    return "\n".join(kmsg) + "\n", "\n".join(raw) + "\n"


def test_kernel_log_dumps_give_the_same_boot():
    console = analyze.load(LIVE)
    kmsg, raw = _as_kmsg(LIVE.read_text())
    for text in (kmsg, raw):
        boot = analyze.parse(text, "dump")
        assert boot.form == "kernel log"
        assert spans(boot, "stage") == spans(console, "stage")
        assert boot.init_ms == pytest.approx(console.init_ms)


def test_timeline_json_with_module_entries(fake_machine):
    m = fake_machine(cmdline="root=live:LABEL=MPLIVE")
    squash = m.squashfs({"sbin/init": m.executable(b"#!/bin/sh\n")})
    m.add_disk("sda", m.filesystem("vfat", label="MPLIVE", files={"live/filesystem.squashfs": squash}),
               removable=True)
    r = m.boot()
    assert r.handed_off
    entries = json.loads(r.read("/run/mpinit/timeline.json"))   # written by the real agent at the hand-off
    entries.append({"module": "virtio_blk", "start_ms": entries[2]["start_ms"] + 1, "duration_ms": 3})
    boot = analyze.parse(json.dumps(entries), "timeline.json")
    assert boot.form == "timeline"
    assert [s.name for s in boot.of("stage")] == [e["stage"] for e in entries if "stage" in e]
    assert spans(boot, "module") == [("virtio_blk", entries[2]["start_ms"] + 1, 3.0)]
    assert boot.of("kernel")[0].name == "kernel + /init start-up"
    # a capture file (capture.py) carries the same list under "timeline"
    assert spans(analyze.parse(json.dumps({"timeline": entries}), "c.json"), "stage") == spans(boot, "stage")


@pytest.mark.parametrize("text, words", [
    ("", "no kernel log lines"),
    ("hello\nworld\n", "no kernel log lines"),
    ("[    1.000000] Run /init as init process\n[    2.0] something\n", "no `mpinit: <stage>"),
    ("[1, 2]", "entry 1: not an object"),
    ('[{"stage": "early", "start_ms": "soon"}]', "entry 1: start_ms is not a time"),
    ('[{"start_ms": 1}]', 'entry 1: no "stage"'),
    ('[{"module": 3, "start_ms": 1}]', "entry 1: module is not a name"),
    ("{\"a\": 1}", "want a JSON list"),
    ("[", "not JSON"),
    ("[]", "no stage entries"),
])
def test_bad_input_names_the_input(text, words):
    with pytest.raises(analyze.AnalyzeError) as e:
        analyze.parse(text, "in.txt")
    assert str(e.value).startswith("in.txt: ") and words in str(e.value)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=400), st.text(max_size=400),
                 st.lists(st.sampled_from([
                     "[    1.000000] Run /init as init process", "[    1.100000] mpinit: early: ok (5 ms)",
                     "[    1.200000] mpinit: root: start", "[    1.3] mpinit: boot failed in stage 'root': x",
                     "6,1,1500000,-;mpinit: devices: d (1 block devices, 9 ms) (20 ms)", " SUBSYSTEM=x",
                     "[    1.400000] mpinit: loaded a, b for filesystem vfat", "<6>[ 2.5] mpinit: handoff: start",
                     '[{"stage": "early", "start_ms": 1, "duration_ms": 2}]', "[    9.9] mpinit: root: resumed ...",
                     "\x1b[0m[    3.0] mpinit: medium: rd.break=medium", "garbage ;,[]<>"]), max_size=12)
                 .map("\n".join)))
def test_parsers_raise_only_their_error(data):
    try:
        boot = analyze.parse(data, "fuzz")
    except analyze.AnalyzeError as e:
        assert str(e).startswith("fuzz")
        return
    analyze.table(boot)
    ET.fromstring(analyze.svg(boot).split("\n", 1)[1])   # well-formed XML


def test_svg_has_a_bar_per_stage_and_a_mark_per_module():
    boot = analyze.load(LIVE)
    root = ET.fromstring(analyze.svg(boot).split("\n", 1)[1])
    ns = "{http://www.w3.org/2000/svg}"
    titles = [t.text for t in root.iter(ns + "title")]
    for name in ("early", "modules", "devices", "medium", "root", "handoff", "kernel"):
        assert any(t.startswith(name + ":") for t in titles), (name, titles)
    assert len(list(root.iter(ns + "circle"))) == 7              # the module loads
    rects = [r for r in root.iter(ns + "rect") if r.get("width") != "100%"]
    assert len(rects) == len([s for s in boot.spans if s.kind != "module"])
    # bars sit on one time axis: modules' bar ends before devices' starts
    xs = {t.text.split(":")[0]: float(r.get("x")) for r in rects for t in r.iter(ns + "title")}
    assert xs["kernel"] < xs["early"] < xs["modules"] < xs["devices"] < xs["root"]


def test_command_prints_the_table_and_writes_the_svg(tmp_path, capsys):
    out = tmp_path / "boot.svg"
    assert cli.main(["analyze", str(LIVE), "--svg", str(out)]) == 0
    text = capsys.readouterr().out
    assert "modules" in text and "kernel to /init:" in text and "chart: %s" % out in text
    assert out.read_text().startswith("<?xml")
    assert [p.name for p in tmp_path.iterdir()] == ["boot.svg"]     # no temporary file left


def test_command_refuses_bad_input_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "notes.txt"
    bad.write_text("no kernel here\n")
    out = tmp_path / "boot.svg"
    assert cli.main(["analyze", str(bad), "--svg", str(out)]) == 2
    assert "notes.txt: no kernel log lines" in capsys.readouterr().err
    assert not out.exists()
    assert cli.main(["analyze", str(tmp_path / "missing.log")]) == 2
    assert "missing.log" in capsys.readouterr().err


def test_time_in_the_rescue_shell_is_a_wait():
    # test_break_premount_repl_then_resume[premount]: rd.break=premount stops before the medium stage, resume()
    boot = analyze.load(DATA / "console-break-medium.log")
    assert spans(boot, "wait") == [("rescue shell (rd.break=medium)", pytest.approx(2171.2),
                                    pytest.approx(3287.381 - 2171.2))]
    medium = [s for s in boot.of("stage") if s.name == "medium"][0]
    assert medium.start_ms == pytest.approx(3287.381) and medium.duration_ms == 52
    assert "of which waiting:" in analyze.table(boot)
