#!/usr/bin/env bash
# The disk-full test (walctl/tests/disk_full_test.rs): fills loop-mounted ext4, xfs
# and btrfs images with the real walctl and checks that a full disk is a clean
# error. Needs root (loop mounts). Installs the mkfs tools a fresh Debian
# machine lacks, then runs the test with DURABILITY_DISK_FULL=1, which makes
# a missing tool or a missing privilege a failure rather than a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
# The mkfs tools live in sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

step() {
    printf '\n==> %s\n' "$*"
}

if [ "$(id -u)" -ne 0 ]; then
    echo "disk_full.sh: must run as root (it loop-mounts filesystem images)" >&2
    exit 1
fi

missing=()
command -v mkfs.ext4 >/dev/null 2>&1 || missing+=(e2fsprogs)
command -v mkfs.xfs >/dev/null 2>&1 || missing+=(xfsprogs)
command -v mkfs.btrfs >/dev/null 2>&1 || missing+=(btrfs-progs)
if [ "${#missing[@]}" -gt 0 ]; then
    step "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Update the package lists once: up front if they were never fetched,
    # otherwise only if installing from the present lists fails.
    updated=0
    if ! find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -print -quit 2>/dev/null | grep -q .; then
        apt-get update
        updated=1
    fi
    if ! apt-get install -y xfsprogs btrfs-progs e2fsprogs; then
        [ "$updated" -eq 0 ] || exit 1
        apt-get update
        apt-get install -y xfsprogs btrfs-progs e2fsprogs
    fi
fi

step "DURABILITY_DISK_FULL=1 cargo test --release -p walctl --test disk_full_test"
DURABILITY_DISK_FULL=1 cargo test --release -p walctl --test disk_full_test -- --nocapture --test-threads=1
