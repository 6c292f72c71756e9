"""Boot a kernel + initramfs in QEMU with the serial console captured: the runner behind `mpinit qemu`, the demo
and the end-to-end tests.

Always `-accel tcg` (software emulation): KVM is not available everywhere CI runs and hangs on some hosts. The
guest's only console is the first 16550 UART (`console=ttyS0`), connected to QEMU's stdio chardev; we read it
through a pipe, copy it to a log file (and to the terminal when interactive), watch it for the expected marker
and for the prompts an input script waits for, and kill QEMU at a hard deadline. `-no-reboot` turns a guest
reboot (or panic=N) into a QEMU exit, so a failed boot ends instead of looping.

Disks are virtio block devices (vda, vdb, ... in the order given) opened with `snapshot=on`: the guest may write
(a `rw` root) but the writes go to a temporary overlay and the image file stays unchanged.

arm64 (arch="arm64", or picked from the kernel image): `qemu-system-aarch64 -M virt -cpu max`, console ttyAMA0
(the board's PL011 UART); virt has no IDE, so a CD-ROM is a SCSI CD on a virtio-scsi controller; UEFI is
Debian's AAVMF (qemu-efi-aarch64). See mpinit.arch for the table.
"""

import os
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import arch as archmod
from .runner import ToolError, find_tool

DEFAULT_MARKER = "MPINIT-LIVE-OK"


@dataclass
class BootResult:
    ok: bool                  # the marker appeared on the console
    output: str               # the whole console output, "\r\n" normalised to "\n"
    elapsed_s: float          # wall-clock time from QEMU start to its exit (or kill)
    marker_line: str | None   # the console line holding the marker, from the marker on
    timed_out: bool = False   # QEMU was killed at the deadline
    exit_status: int | None = None
    sent: list = field(default_factory=list)  # the input actually sent, in order

    def lines(self, prefix="mpinit:"):
        """Console lines that contain `prefix` (e.g. the agent's `mpinit:` lines), from the prefix on."""
        out = []
        for line in self.output.split("\n"):
            i = line.find(prefix)
            if i >= 0:
                out.append(line[i:])
        return out

    def marker_fields(self):
        """The marker line's key=value facts: {"uptime": "3.21", "rootfs": "overlay", "rw": "yes", "cmdline": ...}.

        `cmdline=` is always last and takes the rest of the line (it holds spaces)."""
        if not self.marker_line:
            return {}
        facts = {}
        rest = self.marker_line.split(" ", 1)[1] if " " in self.marker_line else ""
        while rest:
            if rest.startswith("cmdline="):
                facts["cmdline"] = rest[len("cmdline="):]
                break
            word, _, rest = rest.partition(" ")
            key, eq, value = word.partition("=")
            if eq:
                facts[key] = value
        return facts

    def mounts(self, begin="MPINIT-MOUNTS-BEGIN", end="MPINIT-MOUNTS-END"):
        """The /proc/mounts lines the live root printed between its begin/end markers, as field lists."""
        text = self.output
        i = text.find(begin)
        if i < 0:
            return []
        j = text.find(end, i)
        block = text[i + len(begin):j if j >= 0 else len(text)]
        return [line.split() for line in block.split("\n") if len(line.split()) >= 4]


def _normalise_script(input_lines):
    """[(wait_for_text or None, send_text), ...]: a bare string is sent as soon as the previous step is done.

    A newline is added to send_text unless it already ends with one (the serial line is a tty in canonical mode:
    the guest sees the line when the newline arrives)."""
    steps = []
    for item in input_lines or ():
        if isinstance(item, str):
            wait, send = None, item
        else:
            wait, send = item
        if not send.endswith(("\n", "\r")):
            send += "\n"
        steps.append((wait, send))
    return steps


def _resolve_arch(arch, kernel=None):
    """arch given, else the kernel image's (an arm64 Image boots on the arm64 board), else x86_64 (also for a
    kernel file we cannot tell: QEMU itself then says what is wrong with it)."""
    if arch:
        try:
            return archmod.get(arch)
        except archmod.ArchError as e:
            raise ToolError(str(e))
    if kernel is not None:
        try:
            return archmod.of_kernel(kernel)
        except archmod.ArchError:
            pass
    return archmod.ARCHES["x86_64"]


def _machine_argv(arch, qemu, memory_mb):
    return ([qemu or find_tool(arch.qemu_system, arch.qemu_package)] + list(arch.machine_args)
            + ["-accel", "tcg", "-m", str(int(memory_mb)), "-smp", "1",
               "-nodefaults", "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot"])


def _cdrom_argv(arch, cdrom, boot_first=False):
    # Commas in a file name are doubled in QEMU's option syntax.
    path = str(cdrom).replace(",", ",,")
    if arch.bios:
        return ["-drive", "file=%s,if=ide,media=cdrom,readonly=on" % path]
    # The virt board has no IDE: a SCSI CD-ROM behind virtio-scsi (the guest needs virtio_scsi and sr_mod).
    return ["-device", "virtio-scsi-pci,id=scsi0",
            "-drive", "file=%s,if=none,id=cd0,media=cdrom,readonly=on,format=raw" % path,
            "-device", "scsi-cd,bus=scsi0.0,drive=cd0" + (",bootindex=0" if boot_first else "")]


def qemu_argv(kernel, initrd, disks=(), cdrom=None, append="", memory_mb=512, extra_args=(), qemu=None, arch=None):
    """The QEMU command line for one boot (public so tools and tests can show or check it).

    arch: "x86_64" or "arm64"; default: the kernel image's architecture."""
    for what, path in (("kernel", kernel), ("initrd", initrd)):
        if not Path(path).is_file():
            raise ToolError("%s: %s is not a file" % (what, path))
    for d in list(disks) + ([cdrom] if cdrom else []):
        if not Path(d).is_file():
            raise ToolError("disk image %s is not a file" % d)
    arch = _resolve_arch(arch, kernel)
    cmdline = append.strip()
    if "console=" not in cmdline:
        cmdline = (cmdline + " console=" + arch.console).strip()
    argv = _machine_argv(arch, qemu, memory_mb)
    argv += ["-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline]
    for d in disks:
        # Commas in a file name are doubled in QEMU's option syntax.
        argv += ["-drive", "file=%s,if=virtio,format=raw,snapshot=on" % str(d).replace(",", ",,")]
    if cdrom:
        argv += _cdrom_argv(arch, cdrom)
    argv += list(extra_args)
    return argv


NET_GUEST_HOST = "10.0.2.100"   # the web server's address as the guest sees it (inside slirp's 10.0.2.0/24)
NET_HOST = "127.0.0.1"          # the only host address a guest connection is ever forwarded to
NICS = {"virtio": "virtio-net-pci", "e1000": "e1000"}


def net_args(port, tftp=None, bootfile=None, nic="virtio", host=NET_HOST):
    """QEMU arguments for a guest network that reaches one web server on the host's loopback and nothing else.

    Exactly `-netdev user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:80-tcp:127.0.0.1:PORT[,tftp=DIR,
    bootfile=FILE] -device <nic>,netdev=n0`: user-mode networking (slirp), whose built-in DHCP server gives the
    guest 10.0.2.15 and answers PXE with `bootfile` from its TFTP server on `tftp`; `restrict=on` isolates the
    guest from the host and every other network (docs/system/devices/net.rst), so its only way out is the
    guestfwd rule: a TCP connection to 10.0.2.100:80 becomes one to 127.0.0.1:PORT. Any other host address is
    refused: the tests and the tools never send the guest's traffic anywhere else."""
    if str(host) != NET_HOST:
        raise ToolError("network: host address %s refused: a guest may only reach %s" % (host, NET_HOST))
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise ToolError("network: port %r is not a number" % (port,))
    if not 1 <= port <= 65535:
        raise ToolError("network: port %d is not in 1..65535" % port)
    if nic not in NICS:
        raise ToolError("network: NIC %r unknown (one of %s)" % (nic, ", ".join(sorted(NICS))))
    if bootfile and not tftp:
        raise ToolError("network: a boot file (%s) needs a TFTP directory" % bootfile)
    netdev = "user,id=n0,restrict=on,guestfwd=tcp:%s:80-tcp:%s:%d" % (NET_GUEST_HOST, NET_HOST, port)
    if tftp:
        tftp = Path(tftp)
        if not tftp.is_dir():
            raise ToolError("network: TFTP directory %s is not a directory" % tftp)
        netdev += ",tftp=%s" % str(tftp.resolve()).replace(",", ",,")
        if bootfile:
            rel = Path(bootfile)
            if rel.is_absolute() or ".." in rel.parts or not (tftp / rel).is_file():
                raise ToolError("network: boot file %s is not a file inside the TFTP directory %s"
                                % (bootfile, tftp))
            netdev += ",bootfile=%s" % str(bootfile).replace(",", ",,")
    return ["-netdev", netdev, "-device", "%s,netdev=n0" % NICS[nic]]


OVMF_CODE = "/usr/share/OVMF/OVMF_CODE.fd"   # Debian package ovmf (2 MiB flash layout, with OVMF_VARS.fd)
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS.fd"


def firmware_argv(disks=(), cdrom=None, uefi=False, memory_mb=512, extra_args=(), qemu=None,
                  ovmf_code=None, ovmf_vars=None, arch=None):
    """A QEMU command line with no -kernel: the firmware boots the media (live-image/live-iso tests).

    BIOS: SeaBIOS tries the CD-ROM first when there is one (-boot order=dc), else the first disk. UEFI: OVMF's
    code read-only and its variable store opened with snapshot=on (the firmware may write; the file stays).
    Disks are virtio (both firmwares boot from virtio-blk), the CD-ROM an IDE drive.
    arch="arm64": UEFI only (AAVMF from qemu-efi-aarch64), the CD-ROM a SCSI CD on virtio-scsi, booted first."""
    for d in list(disks) + ([cdrom] if cdrom else []):
        if not Path(d).is_file():
            raise ToolError("disk image %s is not a file" % d)
    arch = _resolve_arch(arch)
    if not arch.bios and not uefi:
        raise ToolError("%s has no BIOS: boot its media with UEFI" % arch.name)
    ovmf_code = ovmf_code or arch.efi_code
    ovmf_vars = ovmf_vars or arch.efi_vars
    argv = _machine_argv(arch, qemu, memory_mb)
    if uefi:
        for f in (ovmf_code, ovmf_vars):
            if not Path(f).is_file():
                raise ToolError("%s: not found (Debian package %s)" % (f, arch.efi_package))
        argv += ["-drive", "if=pflash,format=raw,unit=0,readonly=on,file=%s" % str(ovmf_code).replace(",", ",,"),
                 "-drive", "if=pflash,format=raw,unit=1,snapshot=on,file=%s" % str(ovmf_vars).replace(",", ",,")]
    for d in disks:
        argv += ["-drive", "file=%s,if=virtio,format=raw,snapshot=on" % str(d).replace(",", ",,")]
    if cdrom:
        argv += _cdrom_argv(arch, cdrom, boot_first=True)
        if arch.bios:
            argv += ["-boot", "order=dc"]
    argv += list(extra_args)
    return argv


def pxe_argv(tftp, bootfile, port, uefi=False, nic="virtio", memory_mb=512, extra_args=(), qemu=None):
    """A firmware boot from the network alone (no -kernel, no disk): SeaBIOS (or OVMF) runs the NIC's iPXE
    option ROM (Debian package ipxe-qemu), which asks slirp's DHCP for an address and `bootfile` and fetches it
    from the TFTP directory; guest HTTP to 10.0.2.100:80 goes to 127.0.0.1:port (net_args)."""
    net = net_args(port, tftp=tftp, bootfile=bootfile, nic=nic)
    return firmware_argv(uefi=uefi, memory_mb=memory_mb, qemu=qemu,
                         extra_args=net + ["-boot", "order=n"] + list(extra_args))


def boot(kernel, initrd, disks=(), cdrom=None, append="", memory_mb=512, timeout_s=60, marker=DEFAULT_MARKER,
         input_lines=None, log_path=None, interactive=False, extra_args=(), stop_on=None, echo=True, argv=None,
         settle_s=0.5, arch=None, on_data=None):
    """Boot once and return a BootResult; ok is True iff a console line held `marker`.

    input_lines: a script of (wait_for_text, send_text) pairs, fed to the serial console in order: each send
    happens once wait_for_text has appeared in the output after the previous step's match and the console
    has then been quiet for settle_s. interactive: the console is copied to this terminal and the terminal's
    keyboard goes to the guest (QEMU puts a tty stdin in raw mode; Ctrl-C still stops QEMU). stop_on: a text (e.g. a REPL prompt) after which QEMU is killed once
    the console has been quiet for a second and the input script is done, instead of waiting for the guest to
    power off or for the deadline. argv: a complete QEMU command line (e.g. from firmware_argv(), for media
    booted by the firmware) used instead of one built from kernel/initrd/disks/cdrom/append. on_data: called
    as on_data(time.monotonic(), bytes) with each piece of console output as it arrives (the benchmark's host-clock
    figures, bench/mpbench/hostclock.py); it runs on the reader thread and must be quick.
    """
    argv = list(argv) if argv else qemu_argv(kernel, initrd, disks, cdrom, append, memory_mb, extra_args,
                                             arch=arch)
    if echo:
        print("+ " + shlex.join(argv), flush=True)
    steps = _normalise_script(input_lines)
    if interactive and steps:
        raise ToolError("qemu.boot: input_lines and interactive are exclusive (one keyboard at a time)")
    log = open(log_path, "wb") if log_path else None
    chunks = []
    lock = threading.Lock()
    last_data = [time.monotonic()]
    stdin = None if interactive and sys.stdin.isatty() else subprocess.PIPE
    saved_tty = None
    if stdin is None:
        # QEMU puts the terminal in raw mode and restores it when it exits normally; after a kill we do.
        import termios
        saved_tty = termios.tcgetattr(sys.stdin.fileno())
    start = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as e:
        if log:
            log.close()
        raise ToolError("%s: cannot start: %s" % (argv[0], e))

    def reader():
        fd = proc.stdout.fileno()
        while True:
            data = os.read(fd, 65536)
            if not data:
                return
            with lock:
                chunks.append(data)
                last_data[0] = time.monotonic()
            if on_data is not None:
                on_data(last_data[0], data)
            if log:
                log.write(data)
                log.flush()
            if interactive:
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    deadline = start + timeout_s
    timed_out = False
    sent = []
    pos = 0  # where the next wait_for_text is searched from
    sent_len = 0  # the output's length when the last input was sent: stop_on is searched after it
    try:
        while proc.poll() is None:
            now = time.monotonic()
            if now >= deadline:
                timed_out = True
                break
            with lock:
                text = b"".join(chunks).decode("utf-8", "replace")
                quiet_since = last_data[0]
            if steps and proc.stdin:
                wait, send = steps[0]
                i = text.find(wait, pos) if wait else pos
                # Send once the console has settled: a prompt is printed before the guest reads (and may flush
                # the tty's input queue when it sets the line up), so text sent at once can be lost.
                if i >= 0 and now - quiet_since >= settle_s:
                    pos = i + len(wait or "")
                    try:
                        proc.stdin.write(send.encode())
                        proc.stdin.flush()
                    except (BrokenPipeError, OSError):
                        pass
                    sent.append(send)
                    sent_len = len(text)
                    steps.pop(0)
                    continue
            if (stop_on and not steps and text.find(stop_on, max(pos, sent_len)) >= 0
                    and now - quiet_since > 1.0):
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.terminate()  # QEMU exits cleanly on SIGTERM ("terminating on signal 15")
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
        status = proc.wait()
        if saved_tty is not None:
            import termios
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved_tty)
        thread.join(5)
        if proc.stdin:
            try:
                proc.stdin.close()
            except OSError:
                pass
        proc.stdout.close()
        if log:
            log.close()
    elapsed = time.monotonic() - start
    output = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "")
    marker_line = None
    for line in output.split("\n"):
        i = line.find(marker)
        if i >= 0:
            marker_line = line[i:].rstrip()
            break
    return BootResult(ok=marker_line is not None, output=output, elapsed_s=elapsed, marker_line=marker_line,
                      timed_out=timed_out, exit_status=status, sent=sent)
