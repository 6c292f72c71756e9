"""The network-download benchmark (issue 11): the agent's HTTP fetch of the live image against busybox wget, in
the same QEMU set-up, both into a tmpfs.

Set-up, identical for both sides but the -initrd:
  image    the toram benchmark's squashfs (bench/mpbench/medium.py: the test live root + incompressible
           ballast, `--net-mb` MiB), served as live/filesystem.squashfs
  server   Python's http.server on 127.0.0.1, behind mpinit.httprelay.Relay (QEMU's guestfwd carries all guest
           connections over one connection; the relay splits them into one request each)
  QEMU     mpinit.qemu.boot with mpinit.qemu.net_args: `-netdev user,id=n0,restrict=on,
           guestfwd=tcp:10.0.2.100:80-tcp:127.0.0.1:<relay> -device virtio-net-pci,netdev=n0`
  cmdline  root=live:http://10.0.2.100/live/filesystem.squashfs ip=dhcp + the benchmark's common parameters
Ours: `mpinit pack --modules generic-live,generic-net`; the figure is the agent's last fetch progress line
("mpinit: fetch: 100% a/b MiB x.y MB/s done", agent/mpinit_agent/toram.py progress_line(), its own clock).
The peer: static busybox + bench/peer/netfetch.sh + the virtio-net modules; the figure is the file size over
the /proc/uptime difference around `wget` (10 ms resolution).
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

from mpinit import compress, cpio

from . import medium, parse, peer

URL = "http://10.0.2.100/live/filesystem.squashfs"
SCRIPT = Path(__file__).resolve().parent.parent / "peer" / "netfetch.sh"
# Every external command netfetch.sh runs (builtins excluded), as symlinks to busybox.
APPLETS = ("sh", "mount", "mkdir", "cat", "cut", "insmod", "sleep", "stat", "ip", "wget", "poweroff")
PEER_MODULES = ("virtio_pci", "virtio_net")


def script():
    return SCRIPT.read_text()


def peer_image(busybox, closure, compression=compress.DEFAULT):
    """The peer's initramfs bytes: bench/mpbench/peer.py's tree with netfetch.sh as /init and wget/ip linked."""
    tree = peer.build_tree(busybox, closure, script())
    for applet in APPLETS:
        if applet not in peer.APPLETS:
            tree.add_symlink("bin/" + applet, "busybox", source="netfetch")
    method, level = compress.parse_spec(compression)
    return compress.compress(cpio.write_newc(tree.sorted_entries()), method, level)


def ours_image(init, modules_dir, compression=compress.DEFAULT):
    from mpinit.initramfs import PackOptions, build

    return build(PackOptions(init=init, module_dir=modules_dir, modules=["generic-live", "generic-net"],
                             compression=compression)).image


def serve_dir(work, size_mib):
    """work/net-www/live/filesystem.squashfs (a hard link to the toram benchmark's image, else a copy)."""
    import os
    import shutil

    medium.ensure(work, size_mib)
    src = Path(work) / "media" / medium.digest(size_mib) / "filesystem.squashfs"
    www = Path(work) / "net-www"
    if www.exists():
        shutil.rmtree(www)
    (www / "live").mkdir(parents=True)
    dst = www / "live" / "filesystem.squashfs"
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return www


class Server:
    """http.server on 127.0.0.1 serving `root`, behind a Relay (.port is the relay's: give it to net_args)."""

    def __init__(self, root):
        import http.server

        from mpinit.httprelay import LOOPBACK, Relay

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

        handler = functools.partial(Quiet, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer((LOOPBACK, 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.relay = Relay(self.httpd.server_address[1])
        self.port = self.relay.port

    def stop(self):
        self.relay.stop()
        self.httpd.shutdown()
        self.httpd.server_close()


def run_boots(args, kernel, work, metrics, failures, say, common_cmdline):
    """Alternating boots of both sides (args.net_runs each, image args.net_mb MiB); fills the net_fetch Metric.
    common_cmdline: the benchmark's parameters shared by every boot (printk.time=1, console=, rd.shell=0, ...)."""
    from mpinit import atomic, kmod, qemu
    from mpinit.initramfs import PackError
    from mpinit.liveroot import busybox_path
    from mpinit.paths import runtime

    from .report import Metric

    m = Metric("net_fetch", "network: HTTP download of a %d MiB image" % args.net_mb, "MB/s", better="higher",
               note="Both into a tmpfs over QEMU's user-mode network (virtio-net, guestfwd to a relay + "
                    "Python http.server on 127.0.0.1). Ours: the agent's last `mpinit: fetch:` progress line "
                    "(10^6 B/s, 0.1 MB/s resolution, no digest asked for); busybox: the file size / the "
                    "/proc/uptime difference around `wget -O` (10 ms resolution).",
               peer_label="busybox wget")
    metrics.append(m)
    if args.net_runs == 0:
        return
    method = args.compress or compress.DEFAULT
    images = {}
    try:
        images["ours"] = work / "net-ours.img"
        atomic.write_bytes(images["ours"], ours_image(args.runtime or runtime(), kernel.modules_dir, method))
    except (PackError, OSError) as e:
        images["ours"] = None
        m.ours_failures.append("mpinit pack failed: %s" % e)
        failures.append("net: ours: mpinit pack failed: %s" % e)
    closure = kmod.resolve(kernel.modules_dir, list(PEER_MODULES))
    images["peer"] = work / "net-peer.img"
    atomic.write_bytes(images["peer"], peer_image(busybox_path(), closure, method))
    say("net: image of %d MiB, ours %s, peer %s" % (args.net_mb, images["ours"], images["peer"]))
    www = serve_dir(work, args.net_mb)
    server = Server(www)
    append = "root=live:%s ip=dhcp %s" % (URL, common_cmdline)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    try:
        for i in range(args.net_runs):
            for side in (("ours", "peer") if i % 2 == 0 else ("peer", "ours")):
                if images[side] is None or args.only not in (None, side):
                    continue
                log_path = logs / ("net-%s-%d.log" % (side, i + 1))
                what = "%s net boot %d (log %s)" % (side, i + 1, log_path)
                say("%s ..." % what)
                r = qemu.boot(kernel.vmlinuz, images[side], append=append, memory_mb=args.memory,
                              timeout_s=args.timeout, log_path=log_path, echo=False,
                              marker="MPINIT-LIVE-OK" if side == "ours" else "bbinit: netfetch: fetched",
                              extra_args=qemu.net_args(server.port))
                try:
                    value = (parse.progress_mbps(r.output, "fetch", what) if side == "ours"
                             else parse.peer_fetch_mbps(r.output, what))
                except parse.ParseError as e:
                    msg = "%s (%s)" % (e, "timed out" if r.timed_out else "exit %s" % r.exit_status)
                    (m.ours_failures if side == "ours" else m.peer_failures).append(msg)
                    failures.append(msg)
                    say(msg)
                    continue
                (m.ours if side == "ours" else m.peer).append(value)
                say("%s: %.1f MB/s" % (what, value))
    finally:
        server.stop()
