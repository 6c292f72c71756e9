"""agent/native/dirstream.c: the runtime's own opendir/readdir/closedir behind os.listdir and os.ilistdir (the
binary run natively, as a plain MicroPython)."""

import shutil
import subprocess

import pytest

SCRIPT = r"""
import os, sys
top = sys.argv[1]
many = top + "/many"
names = os.listdir(many)
print("many", len(names), len(set(names)), sorted(names) == ["f%03d-%s" % (i, "x" * 60) for i in range(300)])
print("types", sorted([(e[0], e[1] & 0o170000) for e in os.ilistdir(top)]))
# More listings open at once than the static pool holds: the rest come from malloc.
its = [os.ilistdir(top) for i in range(7)]
print("open", [len(list(i)) for i in its])
# Unfinished iterators keep their DIR; the pool is back once they are collected.
for i in range(10):
    it = os.ilistdir(many)
    next(it)
import gc
gc.collect()
print("after", len(os.listdir(many)))
for bad in (top + "/missing", top + "/file"):
    try:
        os.listdir(bad)
        print("no error", bad)
    except OSError as e:
        print("errno", e.errno)
"""


def _tree(tmp_path):
    top = tmp_path / "top"
    (top / "many").mkdir(parents=True)
    for i in range(300):  # about 24 KB of getdents64 records: many refills of the 2 KB buffer
        (top / "many" / ("f%03d-%s" % (i, "x" * 60))).write_text("")
    (top / "sub").mkdir()
    (top / "file").write_text("x")
    (top / "link").symlink_to("file")
    return top


def test_listings_match_the_directory(runtime_binary, tmp_path):
    top = _tree(tmp_path)
    proc = subprocess.run([str(runtime_binary), "-c", SCRIPT, str(top)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "many 300 300 True"
    assert lines[1] == "types %s" % sorted([("file", 0o100000), ("link", 0o120000), ("many", 0o040000),
                                            ("sub", 0o040000)])
    assert lines[2] == "open [4, 4, 4, 4, 4, 4, 4]"
    assert lines[3] == "after 300"
    assert lines[4:] == ["errno 2", "errno 20"]  # ENOENT, ENOTDIR


def test_a_listing_maps_no_memory(runtime_binary, tmp_path):
    """The reason for dirstream.c: musl's opendir mapped and unmapped memory for every listing."""
    if shutil.which("strace") is None:
        pytest.skip("strace not installed")
    top = _tree(tmp_path)
    code = "import os\nprint('-mark-')\nfor i in range(5):\n    os.listdir(%r)\n" % str(top)
    proc = subprocess.run(["strace", "-f", str(runtime_binary), "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    after = proc.stderr.split('write(1, "-mark-', 1)[1]  # the marker's own write, not execve's argv
    assert after.count("getdents64(") == 10
    assert "mmap(" not in after and "munmap(" not in after
