#!/bin/sh
# One demo worker of docker/compose.yaml: check the shared cache, mount the
# dataset with the shared cache, read every file and compare its SHA-256 with
# the sums the seed job computed from the bytes it wrote, then unmount.
# Exit 0 only if every byte matched. Not exercised by CI (no container engine).
set -eu

: "${INPUT_URL:?set INPUT_URL}"
name=$(hostname)
log=/var/log/inputfs-$name.log

unmount() { fusermount3 -u /inputs 2>/dev/null || true; }
trap unmount EXIT

# Each check prints a fix when it fails; exit 1 if any failed.
inputfs doctor --shared-cache /cache --cache-dir /var/cache/inputfs "$INPUT_URL"

mkdir -p /inputs
# Returns once the tree is mounted and serving (it daemonizes).
inputfs mount /inputs \
    --input "dataset=$INPUT_URL" \
    --cache-dir /var/cache/inputfs \
    --shared-cache /cache --require-shared-cache \
    --log-file "$log"

cd /inputs/dataset
if sha256sum -c --quiet /seed/SHA256SUMS; then
    echo "$name: every file matched its SHA-256"
else
    echo "$name: CHECKSUM MISMATCH" >&2
    cat "$log" >&2
    exit 1
fi
cd /

# Per tier: bytes, objects, and the hit ratios of the workers still running.
inputfs status --shared-cache /cache --cache-dir /var/cache/inputfs
