#!/usr/bin/env bash
# Build the runtime image without a registry and without a Dockerfile engine
# (docs/operations.md#the-image): make image.
#
#   1. base: Debian bookworm from Debian's own packages (debootstrap, minbase)
#      with python3, ca-certificates, tzdata and fonts-wqy-microhei (the CJK
#      font of review's notice PDF): no pip, no compiler, no shell
#      tools beyond minbase's;
#   2. dependencies: the wheels of deploy/image/requirements.lock, installed
#      with --require-hashes --no-deps --only-binary (no sdist, nothing built);
#   3. the application: subsidy/ from the COMMITTED tree (git archive HEAD),
#      its protobuf code generated on the build host (grpcio-tools stays here);
#   4. uid/gid 10001 "subsidy", bytecode compiled (the root filesystem is
#      read-only at run time), apt caches and docs removed;
#   5. the root filesystem imported as a one-layer OCI image (podman import),
#      USER 10001, and saved as an OCI archive.
#
# Needs root (debootstrap, chroot), debootstrap and podman (apt-get install
# debootstrap podman runc). Environment: IMAGE (default songjiang-subsidy:dev),
# WORK (default var/image), DEBIAN_MIRROR (default http://deb.debian.org/debian;
# a snapshot.debian.org URL pins every package to one date).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
IMAGE="${IMAGE:-songjiang-subsidy:dev}"
WORK="${WORK:-$ROOT/var/image}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PY="${PY:-$ROOT/.venv/bin/python}"
# make passes PY relative to the repository (.venv/bin/python); step 3 runs it
# from another directory, so make a relative path absolute (not resolved: the
# venv's python must keep its own path to find its site-packages).
case "$PY" in */*) [ "${PY#/}" != "$PY" ] || PY="$ROOT/$PY" ;; esac
export CONTAINERS_CONF="${CONTAINERS_CONF:-$ROOT/deploy/image/containers.conf}"
ROOTFS="$WORK/rootfs"
SRC="$WORK/src"
LIB=/opt/subsidy/lib

[ "$(id -u)" = 0 ] || { echo "build.sh: needs root (debootstrap, chroot)" >&2; exit 2; }
mkdir -p "$WORK"

# 1. The base, from Debian packages (cached: delete $WORK/base.tar to refresh).
if [ ! -f "$WORK/base.tar" ]; then
  rm -rf "$WORK/base"
  debootstrap --variant=minbase --include=python3,ca-certificates,tzdata,fonts-wqy-microhei bookworm "$WORK/base" "$MIRROR"
  tar --numeric-owner -C "$WORK/base" -cf "$WORK/base.tar" .
  rm -rf "$WORK/base"
fi
rm -rf "$ROOTFS"
mkdir -p "$ROOTFS"
tar --numeric-owner -C "$ROOTFS" -xf "$WORK/base.tar"

# 2. The locked dependencies: wheels only, each checked against its hash.
"$PY" -m pip install --quiet --no-deps --require-hashes --only-binary=:all: --no-compile \
  --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
  --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --target "$ROOTFS$LIB" -r deploy/image/requirements.lock

# 3. The application, from the committed tree, with its generated protobuf code.
rm -rf "$SRC"
mkdir -p "$SRC"
git archive HEAD proto subsidy subsidy_dev/__init__.py subsidy_dev/protogen.py | tar -x -C "$SRC"
(cd "$SRC" && "$PY" -m subsidy_dev.protogen)
cp -a "$SRC/subsidy" "$ROOTFS$LIB/subsidy"
git rev-parse HEAD > "$ROOTFS$LIB/subsidy/REVISION"

# 4. The user, python on PATH, bytecode, no caches.
echo "subsidy:x:10001:10001:subsidy:/nonexistent:/usr/sbin/nologin" >> "$ROOTFS/etc/passwd"
echo "subsidy:x:10001:" >> "$ROOTFS/etc/group"
ln -sf /usr/bin/python3 "$ROOTFS/usr/local/bin/python"
chroot "$ROOTFS" /usr/bin/python3 -m compileall -q -j 2 "$LIB" >/dev/null
rm -rf "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/usr/share/doc/* \
       "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/var/log/*
# The base is pinned by its package list: every Debian package and version
# must be the ones in deploy/image/base-packages.txt (a mirror that moved on
# fails the build; IMAGE_REPIN=1 writes the new list, to review and commit).
chroot "$ROOTFS" dpkg-query -W -f '${Package}=${Version}\n' | LC_ALL=C sort > "$WORK/packages.txt"
if [ "${IMAGE_REPIN:-0}" = 1 ]; then
  cp "$WORK/packages.txt" deploy/image/base-packages.txt
elif ! diff -u deploy/image/base-packages.txt "$WORK/packages.txt"; then
  echo "build.sh: the base's packages differ from deploy/image/base-packages.txt (IMAGE_REPIN=1 to accept)" >&2
  exit 1
fi

# 5. One layer, no registry.
podman rmi -f "$IMAGE" >/dev/null 2>&1 || true
tar --numeric-owner --sort=name --mtime=@0 -C "$ROOTFS" -c . | podman import \
  --change 'USER 10001:10001' \
  --change 'WORKDIR /tmp' \
  --change "ENV PYTHONPATH=$LIB" \
  --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
  --change 'ENV PYTHONUNBUFFERED=1' \
  --change 'ENV HOME=/tmp' \
  --change 'ENV SUBSIDY_POLICY_DIR=/etc/subsidy/policy' \
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  --change 'CMD ["python", "-c", "print(\"usage: python -m subsidy.services.<name>\")"]' \
  --message "songjiang-subsidy $(git rev-parse --short HEAD)" \
  - "$IMAGE" >/dev/null
rm -f "$WORK/songjiang-subsidy.oci.tar"
podman save --format oci-archive -o "$WORK/songjiang-subsidy.oci.tar" "$IMAGE"
echo "built $IMAGE ($(podman image inspect --format '{{.Id}}' "$IMAGE" | cut -c1-12)); OCI archive $WORK/songjiang-subsidy.oci.tar; packages $WORK/packages.txt"
