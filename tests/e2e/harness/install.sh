#!/bin/sh
# Install what the real-kernel e2e harness needs on Debian 12 (run as root).
# Deliberately NOT libvirt-daemon-system: it ships init/systemd units and
# users; the harness starts its own private libvirtd (see libvirtd.py), so the
# bare daemon + QEMU driver is enough and nothing tries to start a service.
set -eu
export DEBIAN_FRONTEND=noninteractive

PACKAGES="
qemu-system-x86
qemu-utils
libvirt-daemon
libvirt-daemon-driver-qemu
libvirt-clients
dropbear-bin
dash
coreutils
util-linux
kmod
pciutils
pci.ids
cpio
e2fsprogs
openssh-client
"
# busybox-static conflicts with the dynamic busybox package; either works.
if ! dpkg-query -W -f='${Status}' busybox 2>/dev/null | grep -q 'ok installed'; then
    PACKAGES="$PACKAGES busybox-static"
fi

apt-get update -qq
# shellcheck disable=SC2086  # word splitting of the list is intended
apt-get install -y -qq --no-install-recommends $PACKAGES
