#!/bin/sh
# The network-download benchmark's peer: /init of a busybox-static initramfs that fetches the live image over
# HTTP with busybox wget into a tmpfs, as a guide-style live init does (live-boot's fetch=, archiso's
# archiso_http_srv= and dracut's livenet all call an external downloader). It reads the same
# root=live:http://... parameter as mpinit, so both boot with one identical command line.
#
# The network is QEMU's user-mode network: its DHCP server always gives 10.0.2.15/24, router 10.0.2.2, so the
# address is set directly (udhcpc would need a script file; the address set-up is outside the timed part).
# Lines the benchmark reads go to /dev/kmsg (printk timestamps on the console):
#   bbinit: netfetch: fetched <bytes> bytes in <t0> .. <t1> s      (/proc/uptime before and after wget)
# A failure prints "bbinit: FAILED: ..." and powers off.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
log() { echo "bbinit: $*" > /dev/kmsg; }
fail() { log "FAILED: $*"; echo "bbinit: FAILED: $*"; poweroff -f; }
log "start"

while read -r ko; do
  insmod "$ko" || log "insmod $ko failed"
done < /etc/modules.order
log "modules: done"

url=
for w in $(cat /proc/cmdline); do
  case "$w" in root=live:http://*) url="${w#root=live:}" ;; esac
done
[ -n "$url" ] || fail "no root=live:http://... on the kernel command line"

i=0
until [ -e /sys/class/net/eth0 ]; do
  i=$((i + 1))
  [ $i -ge 100 ] && fail "no eth0 after 10 s"
  sleep 0.1
done
ip link set lo up
ip link set eth0 up || fail "ip link set eth0 up"
ip addr add 10.0.2.15/24 dev eth0 || fail "ip addr add"
ip route add default via 10.0.2.2 || fail "ip route add"
log "network: done"

mkdir -p /mnt/toram
mount -t tmpfs tmpfs /mnt/toram || fail "mount tmpfs"
t0=$(cut -d' ' -f1 /proc/uptime)
wget -q -O /mnt/toram/filesystem.squashfs "$url" || fail "wget $url"
t1=$(cut -d' ' -f1 /proc/uptime)
size=$(stat -c %s /mnt/toram/filesystem.squashfs)
log "netfetch: fetched $size bytes in $t0 .. $t1 s"
echo "bbinit: netfetch: fetched $size bytes in $t0 .. $t1 s"
poweroff -f
