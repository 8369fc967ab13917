#!/usr/bin/env bash
# Build the Hub's template VM (hub:templateVmId) from a Debian 12 cloud image, on a Proxmox VE node.
# Run as root ON THE NODE (it uses qm/pvesm, which talk to the local cluster). Idempotent: it refuses
# to touch an existing VMID, so re-running after a success changes nothing.
#
#   scripts/build-template.sh [VMID] [STORAGE] [BRIDGE]      defaults: 9000 local-lvm vmbr0
#
# What the Hub needs from the template: a cloud-init capable Debian with its disk on scsi0, a
# cloud-init drive on ide2 (hubinfra/clone_init.py CLOUDINIT_INTERFACE), a serial console, the
# guest agent flag on. The Hub VM's cloud-init installs qemu-guest-agent, Docker and git itself.
set -euo pipefail

VMID="${1:-9000}"
STORAGE="${2:-local-lvm}"
BRIDGE="${3:-vmbr0}"
IMAGE_URL="${HUB_TEMPLATE_IMAGE_URL:-https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2}"
SUMS_URL="${IMAGE_URL%/*}/SHA512SUMS"
WORK="${HUB_TEMPLATE_WORKDIR:-/var/lib/vz/template/hub}"

command -v qm >/dev/null || { echo "build-template: run this on a Proxmox VE node (no qm)" >&2; exit 2; }
if qm status "$VMID" >/dev/null 2>&1; then
    echo "build-template: VM $VMID exists; nothing to do (destroy it first to rebuild: qm destroy $VMID)"
    exit 0
fi
pvesm status --storage "$STORAGE" >/dev/null || { echo "build-template: no storage $STORAGE" >&2; exit 2; }

mkdir -p "$WORK"
image="$WORK/$(basename "$IMAGE_URL")"
# Verified against Debian's published SHA512SUMS (fetched over HTTPS from the same directory).
curl -fsSL -o "$WORK/SHA512SUMS" "$SUMS_URL"
if [[ ! -s "$image" ]] || ! (cd "$WORK" && grep " $(basename "$image")\$" SHA512SUMS | sha512sum -c --quiet -); then
    curl -fSL -o "$image" "$IMAGE_URL"
    (cd "$WORK" && grep " $(basename "$image")\$" SHA512SUMS | sha512sum -c --quiet -)
fi

qm create "$VMID" --name hub-template --ostype l26 --cores 2 --memory 2048 \
    --net0 "virtio,bridge=$BRIDGE" --scsihw virtio-scsi-single --agent enabled=1,fstrim_cloned_disks=1 \
    --serial0 socket --vga serial0
qm set "$VMID" --scsi0 "$STORAGE:0,import-from=$image,discard=on,ssd=1,iothread=1"
qm set "$VMID" --ide2 "$STORAGE:cloudinit" --boot order=scsi0
qm template "$VMID"
echo "build-template: template $VMID ready on $STORAGE; set hub:templateVmId $VMID"
