#!/bin/sh
# prepare-guest.sh OUTDIR -> OUTDIR/{vmlinuz,initramfs.gz,disk.qcow2}: the `skyport-tiny` image.
#
# Built from this host's Debian packages: the distribution kernel (extracted from its .deb,
# not installed), a busybox initramfs whose /init loads the virtio modules, powers off on
# the ACPI power button, prints the label of its disk and then SKYPORT-GUEST-READY on the
# serial console (the local-vmm plugin's pending -> running marker), and a disk template
# (qcow2, 1 GiB virtual) whose first line is `SKYPORT-DISK skyport-tiny`: every VM's disk
# is a qcow2 overlay on it. Idempotent and reproducible (fixed timestamps, sorted cpio,
# gzip -n); RECIPE changes whenever the output would.
set -eu
RECIPE=2
OUT=${1:?usage: prepare-guest.sh OUTDIR}
if [ "$(cat "$OUT/recipe" 2>/dev/null)" = "$RECIPE" ]; then echo "$OUT"; exit 0; fi
command -v qemu-img >/dev/null || { echo "prepare-guest: qemu-img not found; install qemu-utils" >&2; exit 1; }
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
  './lib/modules/*/kernel/drivers/acpi/button.ko' './lib/modules/*/kernel/drivers/input/evdev.ko'
R=root; mkdir -p $R/bin $R/lib/modules $R/dev $R/proc $R/sys $R/tmp
cp /bin/busybox $R/bin/busybox
if ldd $R/bin/busybox >/dev/null 2>&1; then echo "prepare-guest: need busybox-static" >&2; exit 1; fi
find k/lib/modules -name '*.ko' -exec cp {} $R/lib/modules/ \;
cat > $R/init <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci \
         virtio_blk virtio_balloon virtio_mem button evdev; do
  insmod /lib/modules/$m.ko 2>/dev/null
done
for e in /sys/class/input/event*; do
  if [ "$(cat $e/device/name 2>/dev/null)" = "Power Button" ]; then
    ( head -c 1 /dev/input/${e##*/} >/dev/null; echo SKYPORT-GUEST-POWEROFF; poweroff -f ) &
  fi
done
echo "SKYPORT-GUEST-DISK $(head -c 512 /dev/vda 2>/dev/null | head -n 1)"
echo "SKYPORT-GUEST-INFO mem_kb=$(awk '/MemTotal/{print $2}' /proc/meminfo) cpus=$(grep -c ^processor /proc/cpuinfo) disks=$(ls /sys/block | grep -v -e ram -e loop | tr '\n' ,)"
echo SKYPORT-GUEST-READY
while :; do sleep 3600; done
INIT
chmod 755 $R/init $R/bin/busybox
find $R -exec touch -h -d @0 {} +
(cd $R && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) | gzip -9n > initramfs.gz
printf 'SKYPORT-DISK skyport-tiny\n' > disk.raw; truncate -s 1G disk.raw
qemu-img convert -q -f raw -O qcow2 disk.raw disk.qcow2
cp k/boot/vmlinuz-* "$OUT/vmlinuz.tmp"; mv initramfs.gz "$OUT/initramfs.gz.new"; mv disk.qcow2 "$OUT/disk.qcow2.new"
mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"; mv "$OUT/initramfs.gz.new" "$OUT/initramfs.gz"
mv "$OUT/disk.qcow2.new" "$OUT/disk.qcow2"; echo "$RECIPE" > "$OUT/recipe"; echo "$OUT"
