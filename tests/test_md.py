"""mpinit_agent.md and proc: which mdadm/lvm commands run for rd.md.uuid= / rd.lvm.vg= / their defaults, and how
their exit codes are collected."""

from agent_stub import StubSys
from mpinit_agent import cmdline, md, proc

MICROPYTHON = True


def cmds(line, mdadm="/sbin/mdadm", lvm="/sbin/lvm"):
    return md.commands(cmdline.parse(line), mdadm, lvm)


def test_defaults_assemble_everything():
    assert cmds("") == [["/sbin/mdadm", "--assemble", "--scan"],
                        ["/sbin/lvm", "vgchange", "--sysinit", "-ay"], ["/sbin/lvm", "vgscan", "--mknodes"]]


def test_named_arrays_and_volume_groups():
    assert cmds("rd.md.uuid=a:b rd.md.uuid=c:d rd.lvm.vg=vg0") == [
        ["/sbin/mdadm", "--assemble", "--scan", "--uuid=a:b"], ["/sbin/mdadm", "--assemble", "--scan", "--uuid=c:d"],
        ["/sbin/lvm", "vgchange", "--sysinit", "-ay", "vg0"], ["/sbin/lvm", "vgscan", "--mknodes"]]


def test_switched_off_or_not_packed():
    assert cmds("rd.md=0 rd.lvm=0") == []
    assert cmds("", mdadm=None, lvm=None) == []
    assert cmds("", lvm=None) == [["/sbin/mdadm", "--assemble", "--scan"]]


def test_assemble_runs_packed_tools_and_reports_exit_codes(fs):
    fs.create_file("/sbin/mdadm", st_mode=0o100755)
    with StubSys(fs, exit_codes={"/sbin/mdadm": 1}) as s:
        results = md.assemble(cmdline.parse(""))
    assert results == [(["/sbin/mdadm", "--assemble", "--scan"], 1)]
    assert [c[0] for c in s.calls] == ["spawn"]


def test_find_tool(fs):
    fs.create_file("/usr/sbin/lvm", st_mode=0o100755)
    assert proc.find_tool("lvm") == "/usr/sbin/lvm"
    assert proc.find_tool("mdadm") is None
