#!/bin/sh
# The benchmark's peer: /init of a busybox-static initramfs doing the same job as mpinit, written the way the
# classic "build your own live system" guides write it. It reads the same kernel parameters as mpinit for what the
# benchmark uses (root=live:LABEL=<label>, toram), so both inits boot with one identical command line.
#
# Lines that the benchmark reads go to /dev/kmsg, so they carry the kernel's printk timestamp (printk.time=1) on
# the console, on the same clock as the kernel's "Run /init as init process" line:
#   bbinit: start
#   bbinit: modules: done, bbinit: medium: <device>, bbinit: root: done   (phase ends, for the breakdown)
#   bbinit: toram: copied <bytes> bytes in <t0> .. <t1> s        (/proc/uptime before and after cp)
#   bbinit: VmHWM: <n> kB                                        (PID 1's peak RSS, proc(5) /proc/<pid>/status)
#   bbinit: switch_root                                          (the last line before the hand-off)
# A failure prints "bbinit: FAILED: ..." and powers off (a guide would start a shell; the benchmark must end).
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
log() { echo "bbinit: $*" > /dev/kmsg; }
fail() { log "FAILED: $*"; echo "bbinit: FAILED: $*"; poweroff -f; }
log "start"

# Modules: every module in the image, dependencies first (the order comes from the host: there is no modules.dep).
while read -r ko; do
  insmod "$ko" || log "insmod $ko failed"
done < /etc/modules.order
log "modules: done"

label=
toram=
for w in $(cat /proc/cmdline); do
  case "$w" in
    root=live:LABEL=*) label="${w#root=live:LABEL=}" ;;
    toram|rd.live.ram=1) toram=1 ;;
  esac
done
[ -n "$label" ] || fail "no root=live:LABEL=... on the kernel command line"

# Wait for the medium: findfs in a loop, at most 30 s.
i=0
until dev=$(findfs "LABEL=$label" 2>/dev/null); do
  i=$((i + 1))
  [ $i -ge 300 ] && fail "no device with LABEL=$label after 30 s"
  sleep 0.1
done
log "medium: $dev"

mkdir -p /mnt/medium /mnt/toram /mnt/rootfs /mnt/cow /newroot
# The filesystem type is left to mount (busybox tries each type in /proc/filesystems). vfat needs the NLS module
# of its iocharset, and Debian's kernels default to "ascii" (CONFIG_FAT_DEFAULT_IOCHARSET), which is not in the
# module set: ask for utf8 first, then retry without options for filesystems that refuse iocharset=.
mount -o ro,iocharset=utf8 "$dev" /mnt/medium 2>/dev/null || mount -o ro "$dev" /mnt/medium || fail "mount $dev"
img=/mnt/medium/live/filesystem.squashfs
[ -f "$img" ] || fail "$img not found on $dev"

if [ -n "$toram" ]; then
  size=$(stat -c %s "$img")
  mount -t tmpfs -o size=$((size / 1048576 + 2))m tmpfs /mnt/toram || fail "mount tmpfs for toram"
  t0=$(cut -d' ' -f1 /proc/uptime)
  cp "$img" /mnt/toram/filesystem.squashfs || fail "cp $img to RAM"
  t1=$(cut -d' ' -f1 /proc/uptime)
  log "toram: copied $size bytes in $t0 .. $t1 s"
  umount /mnt/medium
  img=/mnt/toram/filesystem.squashfs
fi

mount -t squashfs -o ro,loop "$img" /mnt/rootfs || fail "mount $img"
mount -t tmpfs -o size=50% tmpfs /mnt/cow || fail "mount tmpfs for the overlay"
mkdir -p /mnt/cow/upper /mnt/cow/work
mount -t overlay overlay -o lowerdir=/mnt/rootfs,upperdir=/mnt/cow/upper,workdir=/mnt/cow/work /newroot \
  || fail "mount overlay"
[ -x /newroot/sbin/init ] || fail "/sbin/init missing in the image"
log "root: done"

# Logged before the moves: /dev/kmsg goes with /dev (mpinit also logs its hand-off line before moving mounts).
log "VmHWM: $(grep VmHWM /proc/$$/status | tr -s ' \t' ' ' | cut -d' ' -f2) kB"
log "switch_root"
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
exec switch_root /newroot /sbin/init
