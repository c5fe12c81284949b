#!/bin/sh
# Demo NFS server for docker/compose.yaml: exports /export (a named volume, not
# the container's overlay filesystem, which the kernel NFS server cannot export
# reliably) over NFSv4 only, as the pseudo-root (fsid=0), so clients mount ":/".
# Runs the host kernel's nfsd inside this container's network namespace, so the
# container must be privileged. Not exercised by CI (no container engine there).
set -eu

mkdir -p /export
# Workers of the demo run as root; give the cache to everyone in the demo.
# In production use a group and 2775 (docs/SETUP.md, docs/THREAT-MODEL.md).
chmod 2777 /export
echo "/export *(rw,sync,no_subtree_check,no_root_squash,insecure,fsid=0)" > /etc/exports

# Loads the nfsd module through the host's modprobe if needed; if this fails,
# run `sudo modprobe nfsd` on the host.
mountpoint -q /proc/fs/nfsd || mount -t nfsd nfsd /proc/fs/nfsd

stop() {
    rpc.nfsd 0 || true
    exportfs -ua || true
    kill "$mountd" 2>/dev/null || true
    exit 0
}
trap stop TERM INT

rpcbind -w
exportfs -ra
rpc.mountd -N 2 -N 3 -F &
mountd=$!
rpc.nfsd -N 3 8
echo "nfs-server: exporting /export over NFSv4 on port 2049"
wait "$mountd"
