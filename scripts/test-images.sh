#!/usr/bin/env bash
# Make the disk images the content-inspection tests upload, into the directory given.
#
#   scripts/test-images.sh DIR
#
# Images in every format qemu-img writes (raw, qcow2, vmdk sparse and streamOptimized, vhd, vhdx,
# vdi), an ISO 9660 image (xorriso), and crafted unsafe ones: a qcow2 with a backing file, a qcow2
# with an external data file, and a monolithicFlat VMDK descriptor whose extent is /etc/passwd.
# Every disk is 4 MiB virtual and at most a few hundred KiB on disk. When qemu-img or xorriso is
# missing, the Debian packages qemu-utils / xorriso are installed (as root; otherwise this fails
# and says what to install). Idempotent: DIR/manifest is written last, and when it exists nothing
# is done again.
set -euo pipefail

die() {
    echo "test-images.sh: $*" >&2
    exit 1
}

[[ $# -eq 1 ]] || die "usage: scripts/test-images.sh DIR"
out="$1"
[[ -f "$out/manifest" ]] && exit 0

missing=()
command -v qemu-img >/dev/null || missing+=(qemu-utils)
command -v xorriso >/dev/null || missing+=(xorriso)
if ((${#missing[@]})); then
    if ((EUID != 0)); then
        die "qemu-img/xorriso not found; install them with: sudo apt-get install -y ${missing[*]}"
    fi
    echo "test-images.sh: installing the Debian packages ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
fi

mkdir -p "$out"
cd "$out"
size=4M
q() { qemu-img "$@" >/dev/null; }

# A raw disk with some data in it, then the same disk in every other format.
head -c 65536 /dev/urandom >seed.bin
q create -f raw raw.img "$size"
dd if=seed.bin of=raw.img bs=64K seek=1 conv=notrunc status=none
q convert -f raw -O qcow2 raw.img qcow2.img
q convert -f raw -O vmdk raw.img vmdk.img
q convert -f raw -O vmdk -o subformat=streamOptimized raw.img vmdk-stream.img
q convert -f raw -O vpc raw.img vhd.img
q convert -f raw -O vhdx raw.img vhdx.img
q convert -f raw -O vdi raw.img vdi.img

mkdir -p iso-root
echo "glimpse test image" >iso-root/README.TXT
xorriso -as mkisofs -quiet -V GLIMPSE -o iso.iso iso-root 2>/dev/null

# Unsafe: a qcow2 that reads another file (backing file) or keeps its data outside (data_file).
q create -f qcow2 -b "$PWD/qcow2.img" -F qcow2 qcow2-backing.img "$size"
q create -f qcow2 -o data_file="$PWD/qcow2-data.raw" qcow2-datafile.img "$size"
# Unsafe: a VMDK descriptor whose flat extent is a host file.
cat >vmdk-flat-passwd.vmdk <<'VMDK'
# Disk DescriptorFile
version=1
CID=fffffffe
parentCID=ffffffff
createType="monolithicFlat"

# Extent description
RW 8192 FLAT "/etc/passwd" 0

# The Disk Data Base
ddb.virtualHWVersion = "4"
ddb.adapterType = "ide"
VMDK

rm -f seed.bin
rm -rf iso-root
ls >manifest
