#!/usr/bin/env bash
# `make demo`: a guided tour of what hoist can do so far, printed like a tutorial.
# It uses its own state root (target/demo/root), so it never touches /var/lib/hoist.
set -euo pipefail
cd "$(dirname "$0")/.."
HOIST="$PWD/target/release/hoist"
export HOIST_ROOT="$PWD/target/demo/root"
rm -rf "$HOIST_ROOT"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "Pull the fixture images built by 'make images' (OCI archives, no network)"
run "$HOIST" pull oci-archive:target/images/hello.tar
run "$HOIST" pull oci-archive:target/images/etcd.tar
run "$HOIST" pull oci-archive:target/images/layered.tar

step "Pulling again does no work"
run "$HOIST" pull oci-archive:target/images/etcd.tar

step "The local store"
run "$HOIST" images
echo "(hello and etcd start from the same busybox layer: it is stored and extracted once)"

step "What an image expects at install time"
run "$HOIST" images info etcd

step "A read-only view of an image's root filesystem"
mnt=$(mktemp -d)
run "$HOIST" mount etcd "$mnt"
run ls "$mnt" "$mnt/usr/bin"
run "$mnt/usr/bin/etcd" --version
run "$HOIST" umount "$mnt"
rmdir "$mnt"

step "Remove an image and free what nothing uses"
run "$HOIST" images rm layered
run "$HOIST" images prune
run "$HOIST" --json images

printf '\nDone. State root: %s (remove it when you like).\n' "$HOIST_ROOT"
