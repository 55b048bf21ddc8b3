#!/bin/sh
# Build the Debian package (debian/) with Debian's own tools and check it
# with lintian.  dpkg-buildpackage runs in a copy of the tree under OUT, so
# its build/ and debian/ artefacts never land in the checkout; the .deb is
# left in OUT.  The build compiles once, with -j2 and without any test
# suite (nocheck): the suites run in make check, not here.
#
#   scripts/deb.sh OUT      (make deb: OUT is $(BUILD)/deb)
set -eu
OUT=${1:?usage: deb.sh OUT_DIR}
TOP=$(cd "$(dirname "$0")/.." && pwd)

version=$(sed -n 's/^#define ALARM_DIGEST_VERSION "\(.*\)"$/\1/p' "$TOP/common/version.h")
[ -n "$version" ] || { echo "deb: no ALARM_DIGEST_VERSION in $TOP/common/version.h" >&2; exit 1; }
src="$OUT/alarm-digest-$version"

rm -rf "$OUT"
mkdir -p "$src"
OUT=$(cd "$OUT" && pwd)
src="$OUT/alarm-digest-$version"

# What a clean clone would hold, as the working tree has it now (edits
# included): tracked and untracked-but-not-ignored files.  Outside git
# (an unpacked tarball), everything but build/ and state/.
if git -C "$TOP" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	(cd "$TOP" && git ls-files -z --cached --others --exclude-standard |
	    xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\n" "$f"; done' sh |
	    tar -cf - -T -) | tar -xf - -C "$src"
else
	(cd "$TOP" && tar -cf - --exclude=./build --exclude=./state .) | tar -xf - -C "$src"
fi

# The package is built as a clean clone would be: nothing from the make
# that called us (BUILD=, SANITIZE=1 in MAKEFLAGS) may reach its make.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES BUILD SANITIZE BREAK_DEFS
echo "deb: dpkg-buildpackage -us -uc -b in $src"
(cd "$src" &&
    DEB_BUILD_OPTIONS="nocheck parallel=2${DEB_BUILD_OPTIONS:+ $DEB_BUILD_OPTIONS}" \
    DEB_BUILD_PROFILES="nocheck" \
    dpkg-buildpackage -us -uc -b) > "$OUT/build.log" 2>&1 || {
	tail -n 40 "$OUT/build.log" >&2
	echo "deb: dpkg-buildpackage failed in $src; whole log: $OUT/build.log" >&2
	exit 1
}

set -- "$OUT"/alarm-digest_"$version"-*_*.deb
[ -e "$1" ] || { echo "deb: dpkg-buildpackage left no alarm-digest_$version-*.deb in $OUT" >&2; exit 1; }
echo "deb: $1"

# Clean means no error and no warning; what remains is explained in
# debian/source/lintian-overrides or debian/alarm-digest.lintian-overrides.
echo "deb: lintian $1"
lintian --fail-on error,warning --info "$1" || {
	echo "deb: lintian reports errors or warnings on $1" >&2
	exit 1
}
# Only the package is kept: the copy's build tree was a means.
rm -rf "$src"
