#!/bin/sh
# Run a command (default: make test) in a clean clone of this repository's
# HEAD inside a fresh Debian 12 made by debootstrap, with nothing else
# installed than a new machine has (git and make): so that "the two
# commands work on a fresh machine" is checked, not assumed.  Packages come
# from deb.debian.org only.  Needs root.  The chroot is kept in DIR
# (default /var/tmp/alarm-fresh) and reused, so a second run downloads only
# what `make test` installs again; delete DIR for a truly fresh start.
#
#   scripts/fresh.sh [-d DIR] [COMMAND...]
set -eu

DIR=/var/tmp/alarm-fresh
if [ "${1:-}" = "-d" ]; then
	DIR=$2
	shift 2
fi
[ $# -gt 0 ] || set -- make test
[ "$(id -u)" -eq 0 ] || { echo "fresh: needs root (debootstrap, chroot, mounts)" >&2; exit 1; }
REPO=$(cd "$(dirname "$0")/.." && pwd)
MIRROR=http://deb.debian.org/debian

if ! command -v debootstrap >/dev/null 2>&1; then
	echo "fresh: installing debootstrap" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2
fi
if [ ! -x "$DIR/usr/bin/apt-get" ]; then
	echo "fresh: debootstrap bookworm into $DIR" >&2
	debootstrap bookworm "$DIR" "$MIRROR" >&2
fi
cat >"$DIR/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
cp /etc/resolv.conf "$DIR/etc/resolv.conf"

# Undone however the run ends; a mount left behind would pin the host's /dev.
cleanup() {
	for m in run dev/shm dev/pts dev sys proc; do
		! mountpoint -q "$DIR/$m" || umount -l "$DIR/$m"
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for m in proc sys dev dev/pts; do
	mountpoint -q "$DIR/$m" || mount --bind "/$m" "$DIR/$m"
done
mountpoint -q "$DIR/dev/shm" || mount -t tmpfs tmpfs "$DIR/dev/shm"
mountpoint -q "$DIR/run" || mount -t tmpfs tmpfs "$DIR/run"

chroot "$DIR" /usr/bin/env DEBIAN_FRONTEND=noninteractive /bin/sh -c \
    'apt-get update -q && apt-get install -y -q --no-install-recommends git make ca-certificates' >&2
rm -rf "$DIR/root/alarm"
git clone -q "$REPO" "$DIR/root/alarm"
echo "fresh: running '$*' in $DIR/root/alarm ($(git -C "$REPO" rev-parse --short HEAD))" >&2
chroot "$DIR" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /bin/sh -c 'cd /root/alarm && exec "$@"' sh "$@"
