#!/bin/sh
# prepare-guest.sh OUTDIR -> OUTDIR/{vmlinuz,initramfs.gz,disk.qcow2,snapshot-boot}: the
# `skyport-tiny` image (`snapshot-boot` says its guest supports snapshot boots, below).
#
# Built from this host's Debian packages: the distribution kernel (extracted from its .deb,
# not installed), a busybox initramfs with dropbear (and the shared libraries it links), and
# a disk template (qcow2, 1 GiB virtual) whose first line is `SKYPORT-DISK skyport-tiny`:
# every VM's disk is a qcow2 overlay on it. The initramfs is the root filesystem (RAM); its
# /init runs at every boot, printing markers on the serial console (ttyS0), in this order:
#   1. loads the virtio modules (PCI, block, balloon, memory, network), isofs, the ACPI
#      button and qemu_fw_cfg; the power button powers the guest off (SKYPORT-GUEST-POWEROFF).
#      Snapshot point: booted with the kernel argument `skyport.snapshot` and the fw_cfg file
#      opt/skyport/mac holding 00:00:00:00:00:00 (a template), it prints
#      `SKYPORT-GUEST-SNAPSHOT-POINT` and waits, polling that file every 20 ms. local-vmm
#      saves the machine there; a VM restored from the save has its own MAC in the file,
#      so its guest goes on: it drops its page caches (its disks are not the template's),
#      sets the clock from the RTC, gives eth0 that MAC, prints
#      `SKYPORT-GUEST-RESTORED <mac>`, and carries on with step 2 as a booted guest would.
#   2. reads a NoCloud seed if one is attached: the first block device other than vda whose
#      ISO9660 volume label is `cidata` (genisoimage -V cidata -J -r), mounted read-only.
#      From `meta-data` (YAML, read with sed/awk): `instance-id`, `local-hostname` (set as
#      the hostname) and the `public-keys` list (-> /root/.ssh/authorized_keys); `user-data`
#      is optional. Prints `SKYPORT-GUEST-SEED <dev> instance-id=<id> hostname=<name>
#      keys=<n>`, or `SKYPORT-GUEST-SEED none`.
#   3. brings up lo and eth0 and asks DHCP for eth0's address (udhcpc, 10 tries 2 s apart,
#      then it keeps trying and renewing in the background; /etc/udhcpc.script sets the
#      address, default route, MTU and /etc/resolv.conf). Prints
#      `SKYPORT-GUEST-NET eth0 <ipv4>/<prefix> <mac>`, or `SKYPORT-GUEST-NET none` without
#      a NIC or a lease.
#   4. starts dropbear on port 22: host keys made on first use (/etc/dropbear, new at every
#      boot), password logins disabled, root logs in with the seed's keys. Prints
#      `SKYPORT-GUEST-SSH dropbear` once port 22 listens (`SKYPORT-GUEST-SSH failed` if not).
#   5. user data: a `#!` script runs once per instance-id. The instance-id it ran for is
#      recorded on the persistent disk (the line `SKYPORT-FIRSTBOOT <id>` at byte 4096 of
#      /dev/vda, only on a skyport-tiny disk) before it starts, so reboots and stop/start do
#      not run it again (`SKYPORT-GUEST-USERDATA skipped`). Other user data (e.g.
#      #cloud-config) is not understood: `SKYPORT-GUEST-USERDATA unsupported`.
#   6. prints `SKYPORT-GUEST-DISK <first line of vda>`, `SKYPORT-GUEST-INFO mem_kb=...
#      cpus=... disks=...` and `SKYPORT-GUEST-READY` (the local-vmm plugin's pending ->
#      running marker: SSH already listens).
#   7. then starts the user data script, in the background: its output is appended to the
#      console and /var/log/user-data.log, followed by `SKYPORT-GUEST-USERDATA exit=<code>`
#      when it ends.
# Idempotent and reproducible (fixed timestamps, sorted cpio, gzip -n); RECIPE changes
# whenever the output would.
set -eu
RECIPE=4
OUT=${1:?usage: prepare-guest.sh OUTDIR}
if [ "$(cat "$OUT/recipe" 2>/dev/null)" = "$RECIPE" ]; then echo "$OUT"; exit 0; fi
command -v qemu-img >/dev/null || { echo "prepare-guest: qemu-img not found; install qemu-utils" >&2; exit 1; }
[ -x /usr/sbin/dropbear ] || { echo "prepare-guest: /usr/sbin/dropbear not found; install dropbear-bin" >&2; exit 1; }
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d); chmod 755 "$WORK"; trap 'rm -rf "$WORK"' EXIT; cd "$WORK"
KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
if [ -z "$KPKG" ]; then
    apt-get update -q >/dev/null 2>&1 || true
    KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
fi
[ -n "$KPKG" ] || { echo "prepare-guest: cannot find the kernel package (apt-get update?)" >&2; exit 1; }
apt-get download -q "$KPKG" 2>&1 >/dev/null | grep -v "unsandboxed as root" >&2 || true
mkdir k; dpkg-deb --fsys-tarfile ./"$KPKG"_*.deb | tar -x -C k --wildcards \
  './boot/vmlinuz-*' './lib/modules/*/kernel/drivers/virtio/*.ko' \
  './lib/modules/*/kernel/drivers/block/virtio_blk.ko' \
  './lib/modules/*/kernel/drivers/net/virtio_net.ko' './lib/modules/*/kernel/drivers/net/net_failover.ko' \
  './lib/modules/*/kernel/net/core/failover.ko' \
  './lib/modules/*/kernel/fs/isofs/isofs.ko' './lib/modules/*/kernel/drivers/cdrom/cdrom.ko' \
  './lib/modules/*/kernel/drivers/acpi/button.ko' './lib/modules/*/kernel/drivers/input/evdev.ko' \
  './lib/modules/*/kernel/drivers/firmware/qemu_fw_cfg.ko'
R=root; mkdir -p $R/bin $R/lib/modules $R/dev $R/proc $R/sys $R/tmp $R/run $R/mnt $R/etc/dropbear \
  $R/root $R/var/log $R/usr/sbin
ln -s ../run $R/var/run
chmod 700 $R/root; chmod 1777 $R/tmp
cp /bin/busybox $R/bin/busybox
if ldd $R/bin/busybox >/dev/null 2>&1; then echo "prepare-guest: need busybox-static" >&2; exit 1; fi
find k/lib/modules -name '*.ko' -exec cp {} $R/lib/modules/ \;
# dropbear, the libraries it links and the dynamic loader, at their paths on this host.
cp /usr/sbin/dropbear $R/usr/sbin/dropbear
for lib in $(ldd /usr/sbin/dropbear | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}') \
           /lib64/ld-linux-x86-64.so.2; do
  mkdir -p "$R${lib%/*}"; cp -L "$lib" "$R$lib"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' > $R/etc/passwd
printf 'root:x:0:\ntty:x:5:\n' > $R/etc/group
printf '/bin/sh\n' > $R/etc/shells
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' > $R/etc/nsswitch.conf
printf 'export PATH=/bin:/usr/sbin\n' > $R/etc/profile
printf '127.0.0.1 localhost\n' > $R/etc/hosts
cat > $R/etc/udhcpc.script <<'DHCP'
#!/bin/sh
# udhcpc event script: $1 is the event; interface, ip, mask (prefix length), router, dns,
# domain and mtu come from the lease.
case "$1" in
deconfig)
  ip -4 addr flush dev "$interface"; ip link set dev "$interface" up ;;
bound|renew)
  [ -n "${mtu:-}" ] && ip link set dev "$interface" mtu "$mtu"
  if [ "$(ip -4 addr show dev "$interface" | awk '$1 == "inet" {print $2; exit}')" != "$ip/$mask" ]; then
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$mask" ${broadcast:+broadcast "$broadcast"} dev "$interface"
  fi
  if [ -n "${router:-}" ]; then
    while ip -4 route del default dev "$interface" 2>/dev/null; do :; done
    ip route add default via "${router%% *}" dev "$interface"
  fi
  { [ -n "${domain:-}" ] && echo "search $domain"
    for d in ${dns:-}; do echo "nameserver $d"; done; } > /etc/resolv.conf ;;
esac
exit 0
DHCP
cat > $R/init <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/usr/sbin HOME=/root
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /dev/pts; mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci \
         virtio_blk virtio_balloon virtio_mem failover net_failover virtio_net cdrom isofs \
         button evdev qemu_fw_cfg; do
  insmod /lib/modules/$m.ko 2>/dev/null
done
for e in /sys/class/input/event*; do
  if [ "$(cat $e/device/name 2>/dev/null)" = "Power Button" ]; then
    ( head -c 1 /dev/input/${e##*/} >/dev/null; echo SKYPORT-GUEST-POWEROFF; poweroff -f ) &
  fi
done

# Snapshot point. A template boot (kernel argument skyport.snapshot, fw_cfg file
# opt/skyport/mac = 00:00:00:00:00:00) waits here, every module loaded, for the host to save
# the machine. A VM restored from that save has its own MAC in the file: it goes on from
# here with fresh page caches (its disks are its own), the clock from the RTC, and its MAC.
mac_file=/sys/firmware/qemu_fw_cfg/by_name/opt/skyport/mac/raw
if grep -qw skyport.snapshot /proc/cmdline && [ -e $mac_file ]; then
  echo SKYPORT-GUEST-SNAPSHOT-POINT
  while mac=$(cat $mac_file); [ "$mac" = 00:00:00:00:00:00 ]; do sleep 0.02; done
  echo 3 > /proc/sys/vm/drop_caches
  hwclock -s -u 2>/dev/null
  [ -e /sys/class/net/eth0 ] && ip link set eth0 address "$mac"
  echo "SKYPORT-GUEST-RESTORED $mac"
fi
disk=$(head -c 512 /dev/vda 2>/dev/null | head -n 1)

# NoCloud seed: an ISO9660 volume labelled cidata on any disk but vda.
iid=; host=; nkeys=0; seed=none
for b in /sys/block/*; do
  d=${b##*/}
  case $d in vda|ram*|loop*) continue ;; esac
  label=$(dd if=/dev/$d bs=2048 skip=16 count=1 2>/dev/null | dd bs=1 skip=40 count=32 2>/dev/null | tr -d ' \000')
  case $label in cidata|CIDATA) ;; *) continue ;; esac
  mkdir -p /mnt/seed /run/seed
  mount -t iso9660 -o ro /dev/$d /mnt/seed 2>/dev/null || continue
  for f in meta-data user-data; do
    [ -f /mnt/seed/$f ] && cp /mnt/seed/$f /run/seed/$f
  done
  umount /mnt/seed; seed=/dev/$d; break
done
if [ -f /run/seed/meta-data ]; then
  tr -d '\r' < /run/seed/meta-data > /run/seed/meta
  field() {
    sed -n "s/^$1:[[:space:]]*//p" /run/seed/meta | head -n 1 | sed -e 's/[[:space:]]*$//' \
      -e 's/^"\(.*\)"$/\1/' -e "s/^'\(.*\)'\$/\1/"
  }
  iid=$(field instance-id | tr -cd 'A-Za-z0-9._:-' | cut -c 1-200)
  host=$(field local-hostname | tr -cd 'A-Za-z0-9.-' | cut -c 1-63)
  # public-keys: a list (or map) of OpenSSH public keys, one a line.
  awk '/^[^[:space:]#-]/ { inkeys = 0 }
       /^public-keys:/ { inkeys = 1; sub(/^public-keys:[[:space:]]*/, "") }
       inkeys && match($0, /(ssh-|ecdsa-|sk-)[^[:space:]]+[[:space:]]+[A-Za-z0-9+\/]+=*/) {
         k = substr($0, RSTART); sub(/["\047][[:space:]]*$/, "", k); sub(/[[:space:]]+$/, "", k); print k
       }' /run/seed/meta > /run/seed/keys
  nkeys=$(grep -c . /run/seed/keys || true)
  if [ "$nkeys" -gt 0 ]; then
    mkdir -p /root/.ssh; chmod 700 /root/.ssh
    cp /run/seed/keys /root/.ssh/authorized_keys; chmod 600 /root/.ssh/authorized_keys
  fi
  if [ -n "$host" ]; then
    hostname "$host"; echo "$host" > /etc/hostname; echo "127.0.1.1 $host" >> /etc/hosts
  fi
fi
if [ "$seed" = none ]; then echo "SKYPORT-GUEST-SEED none"
else echo "SKYPORT-GUEST-SEED $seed instance-id=${iid:-none} hostname=${host:-none} keys=$nkeys"; fi

# Network: DHCP on eth0, bounded wait; udhcpc stays to renew (or to keep asking).
ip link set lo up
net=none
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  udhcpc -i eth0 -s /etc/udhcpc.script -t 10 -T 2 -b -p /run/udhcpc.pid >/var/log/udhcpc.log 2>&1
  addr=$(ip -4 addr show dev eth0 | awk '$1 == "inet" {print $2; exit}')
  [ -n "$addr" ] && net="eth0 $addr $(tr 'A-F' 'a-f' < /sys/class/net/eth0/address)"
fi
echo "SKYPORT-GUEST-NET $net"

# SSH: keys only; host keys made on first use.
dropbear -R -s -p 22 -P /run/dropbear.pid
ssh=failed; i=0
while [ $i -lt 100 ]; do
  if cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -q ':0016 [0-9A-F]*:0000 0A '; then
    ssh=dropbear; break
  fi
  sleep 0.1; i=$((i + 1))
done
echo "SKYPORT-GUEST-SSH $ssh"

# User data: a #! script, once per instance-id (recorded at byte 4096 of the disk).
if [ -s /run/seed/user-data ]; then
  if [ "$(head -c 2 /run/seed/user-data)" != '#!' ]; then
    echo "SKYPORT-GUEST-USERDATA unsupported"
  else
    mark="SKYPORT-FIRSTBOOT ${iid:-none}"
    if [ "$disk" = "SKYPORT-DISK skyport-tiny" ] &&
       [ "$(dd if=/dev/vda bs=512 skip=8 count=1 2>/dev/null | head -n 1 | tr -d '\000')" = "$mark" ]; then
      echo "SKYPORT-GUEST-USERDATA skipped"
    else
      if [ "$disk" = "SKYPORT-DISK skyport-tiny" ]; then
        echo "$mark" | dd of=/dev/vda bs=512 seek=8 count=1 conv=notrunc,sync,fsync 2>/dev/null
      fi
      cp /run/seed/user-data /run/user-data; chmod 700 /run/user-data
    fi
  fi
fi

echo "SKYPORT-GUEST-DISK $disk"
echo "SKYPORT-GUEST-INFO mem_kb=$(awk '/MemTotal/{print $2}' /proc/meminfo) cpus=$(grep -c ^processor /proc/cpuinfo) disks=$(ls /sys/block | grep -v -e ram -e loop | tr '\n' ,)"
echo SKYPORT-GUEST-READY

# The user data starts once the markers are out, so its output never splits their lines.
# Output and exit line share one FIFO: the exit line comes last, and as soon as the script
# ends, even if children it left behind still hold the FIFO open.
if [ -x /run/user-data ]; then
  mkfifo /run/user-data.out
  tee -a /var/log/user-data.log < /run/user-data.out > /dev/console &
  ( exec > /run/user-data.out 2>&1 < /dev/null; cd /
    /run/user-data; echo "SKYPORT-GUEST-USERDATA exit=$?" ) &
fi
while :; do sleep 3600; done
INIT
chmod 755 $R/init $R/bin/busybox $R/etc/udhcpc.script
find $R -exec touch -h -d @0 {} +
(cd $R && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) | gzip -9n > initramfs.gz
printf 'SKYPORT-DISK skyport-tiny\n' > disk.raw; truncate -s 1G disk.raw
qemu-img convert -q -f raw -O qcow2 disk.raw disk.qcow2
cp k/boot/vmlinuz-* "$OUT/vmlinuz.tmp"; mv initramfs.gz "$OUT/initramfs.gz.new"; mv disk.qcow2 "$OUT/disk.qcow2.new"
mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"; mv "$OUT/initramfs.gz.new" "$OUT/initramfs.gz"
mv "$OUT/disk.qcow2.new" "$OUT/disk.qcow2"; : > "$OUT/snapshot-boot"
echo "$RECIPE" > "$OUT/recipe"; echo "$OUT"
