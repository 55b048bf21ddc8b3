#!/bin/sh
# Install the Debian packages the service, its tests and benchmarks need
# (clang and libclang-rt-14-dev, which holds libFuzzer, for the fuzz targets),
# but only those missing, so a second run costs nothing and needs no network.
set -eu

PKGS="build-essential pkg-config libnats-dev libjson-c-dev uuid-dev liblmdb-dev
libbsd-dev libinih-dev libcmocka-dev libssl-dev libmicrohttpd-dev nats-server procps bash openssl
clang libclang-rt-14-dev"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

echo "deps: installing:$missing" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null 2>&1 || { echo "deps: need root or sudo to install:$missing" >&2; exit 1; }
	SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >&2 || echo "deps: apt-get update failed; trying the install with the current lists" >&2
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing >&2
