#!/bin/sh
# The packaging suite (TAP), run by make check for each build:
#
#   tests/pkg/check.sh BUILD_DIR
#
# the manual pages (mandoc -Tlint clean; alarm-supervisor.conf(5) holds
# every key of common/config.c with its default, so it cannot drift; the
# options of alarm-supervisor(8) and alarmctl(8) are those of --help),
# make install / make uninstall (the exact tree, the installed programs
# run), and make deb (the package's files, control fields, conffiles,
# maintainer scripts, its configuration file, lintian clean).  It needs
# debhelper, dpkg-dev, fakeroot, lintian and mandoc (make deps-pkg, which
# make test and make deb run); without them the checks that need them fail,
# saying so.  PKG_KEEP=1 keeps BUILD_DIR/pkg-install.
set -u
BUILD=${1:?usage: check.sh BUILD_DIR}
TOP=$(cd "$(dirname "$0")/../.." && pwd)
cd "$TOP" || exit 1
MAKE=${MAKE:-make}
TMP="$BUILD/pkg-install"
n=0
failed=0

PLAN=19
echo "1..$PLAN"

ok() {
	n=$((n + 1))
	echo "ok $n - $1"
}

# not_ok NAME REASON [DETAILS_FILE]: the details, if any, as "# " lines.
not_ok() {
	n=$((n + 1))
	failed=$((failed + 1))
	echo "not ok $n - $1: $2"
	[ $# -ge 3 ] && [ -s "$3" ] && sed 's/^/# /' "$3" | head -n 60
}

need() {
	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 || { echo "$t"; return 1; }
	done
	return 0
}

version=$(sed -n 's/^#define ALARM_DIGEST_VERSION "\(.*\)"$/\1/p' common/version.h)
rm -rf "$TMP"
mkdir -p "$TMP" || exit 1
out="$TMP/out"

# ---- manual pages ----

# mandoc -Tlint, every level; only cross-references to our own pages (not
# installed yet) and this host's stale mandoc.db are not findings.
for page in man/alarm-supervisor.8 man/alarm-supervisor.conf.5 man/alarmctl.8; do
	name="man/lint $(basename "$page")"
	if ! missing=$(need mandoc); then
		not_ok "$name" "$missing is not installed (make deps-pkg)"
		continue
	fi
	mandoc -Tlint "$page" 2>&1 |
	    grep -v -e 'referenced manual not found: Xr \(alarm-supervisor\|alarm-supervisor\.conf\|alarmctl\) [58]' \
	    -e 'outdated mandoc\.db' > "$out"
	if [ -s "$out" ]; then
		not_ok "$name" "mandoc -Tlint reports $(wc -l < "$out") lines" "$out"
	else
		ok "$name"
	fi
done

# Every key of config.c's table in alarm-supervisor.conf(5): under its own
# section, as ".It Cm KEY No = Li DEFAULT" (".No = Qq" when empty), its text
# saying whether a reload applies it; and no key the table does not have.
name="man/conf keys match common/config.c"
tests/pkg/keys.sh common/config.c > "$TMP/keys"
awk '
/^\.Ss The \[[a-z_]*\] section$/ { sec = $3; gsub(/[][]/, "", sec); next }
/^\.S[hs] / { sec = "" }
/^\.It Cm [a-z_]* No = / {
	if (key != "") print sec, key, def, reload
	key = $3
	def = $0
	sub(/^\.It Cm [a-z_]* No = /, "", def)
	if (def == "Qq") def = "\"\""
	else { sub(/^Li /, "", def); gsub(/\\-/, "-", def) }
	reload = "?"
	next
}
/^\.It / || /^\.El/ { if (key != "") print sec, key, def, reload; key = "" }
key != "" && /Read at start only\.$/ { reload = (reload == "?") ? "restart" : "twice" }
key != "" && /Applied on reload\.$/ { reload = (reload == "?") ? "reload" : "twice" }
' man/alarm-supervisor.conf.5 > "$TMP/mankeys"
if [ ! -s "$TMP/keys" ]; then
	not_ok "$name" "tests/pkg/keys.sh read no key from common/config.c"
elif diff -u "$TMP/keys" "$TMP/mankeys" > "$out"; then
	ok "$name ($(wc -l < "$TMP/keys") keys)"
else
	not_ok "$name" "'-' lines are config.c's (SECTION KEY DEFAULT RELOAD), '+' the page's" "$out"
fi

# The page's sections in the order of conf/alarm-supervisor.conf, which
# has exactly config.c's sections.
name="man/conf sections in the order of conf/alarm-supervisor.conf"
sed -n 's/^\[\([a-z_]*\)\]$/\1/p' conf/alarm-supervisor.conf > "$TMP/confsec"
sed -n 's/^\.Ss The \[\([a-z_]*\)\] section$/\1/p' man/alarm-supervisor.conf.5 > "$TMP/mansec"
cut -d' ' -f1 "$TMP/keys" | uniq | sort > "$TMP/keysec"
if ! diff -u "$TMP/confsec" "$TMP/mansec" > "$out"; then
	not_ok "$name" "'-' lines are the file's sections, '+' the page's" "$out"
elif ! sort "$TMP/confsec" | diff -u "$TMP/keysec" - > "$out"; then
	not_ok "$name" "the file's sections differ from config.c's ('-' config.c's)" "$out"
else
	ok "$name"
fi

# Items of one list of a page's DESCRIPTION: the N-th top-level list
# (.Bl ... .El, nested lists skipped), its ".It MACRO" lines without the macro.
page_items() { # PAGE N MACRO
	awk -v want="$2" -v mac="$3" '
	/^\.Sh DESCRIPTION/ { on = 1; next }
	/^\.Sh / { on = 0 }
	!on { next }
	/^\.Bl / { depth++; if (depth == 1) list++; next }
	/^\.El/ { depth--; next }
	depth == 1 && list == want && index($0, ".It " mac " ") == 1 {
		print substr($0, length(".It " mac " ") + 1)
	}' "$1"
}

# The options an --help lists (lines "  -x ..." or "  --long ...") against
# the page's options, the first list of its DESCRIPTION.
options_match() { # NAME BINARY PAGE
	"$2" --help > "$TMP/help" 2>&1 || { not_ok "$1" "$2 --help failed" "$TMP/help"; return; }
	sed -n 's/^  *\(--*[a-z][-a-z]*\).*/\1/p' "$TMP/help" | sort -u > "$TMP/helpopts"
	page_items "$3" 1 Fl | awk '{ print "-" $1 }' | sort -u > "$TMP/manopts"
	if [ ! -s "$TMP/helpopts" ]; then
		not_ok "$1" "$2 --help lists no option" "$TMP/help"
	elif diff -u "$TMP/helpopts" "$TMP/manopts" > "$out"; then
		ok "$1"
	else
		not_ok "$1" "'-' lines are --help's options, '+' the page's" "$out"
	fi
}
options_match "man/alarm-supervisor.8 options are --help's" "$BUILD/alarm-supervisor" \
    man/alarm-supervisor.8

# alarmctl(8): its options, then its commands (the second list), each with
# the options its usage line names ("usage: alarmctl [-c FILE] CMD [--json] ARGS").
name="man/alarmctl.8 options and commands are --help's"
if ! "$BUILD/alarmctl" --help > "$TMP/help" 2>&1; then
	not_ok "$name" "$BUILD/alarmctl --help failed" "$TMP/help"
else
	sed -n 's/^  *\(--*[a-z][-a-z]*\).*/\1/p' "$TMP/help" | sort -u > "$TMP/helpopts"
	page_items man/alarmctl.8 1 Fl | awk '{ print "-" $1 }' | sort -u > "$TMP/manopts"
	# Commands: the lines between "commands:" and the next unindented line.
	awk '/^commands:/ { on = 1; next } on && /^[^ ]/ { on = 0 }
	    on { sub(/^  */, ""); sub(/   *.*$/, ""); print }' "$TMP/help" > "$TMP/helpcmds"
	: > "$TMP/helpcmdopts"
	while read -r cmd; do
		# shellcheck disable=SC2086
		"$BUILD/alarmctl" $cmd --help 2>&1 | sed -n '1s/^usage: alarmctl \[-c FILE\] //p' |
		    grep -o -- '--[a-z][-a-z]*' | grep -v -x -e --json | sort -u |
		    sed "s/^/$cmd: /" >> "$TMP/helpcmdopts"
	done < "$TMP/helpcmds"
	page_items man/alarmctl.8 2 Cm > "$TMP/mancmdlines"
	sed 's/ \(Oo\|Op\|Ar\|Fl\) .*//' "$TMP/mancmdlines" > "$TMP/mancmds"
	: > "$TMP/mancmdopts"
	while read -r line; do
		cmd=$(printf '%s\n' "$line" | sed 's/ \(Oo\|Op\|Ar\|Fl\) .*//')
		printf '%s\n' "$line" | grep -o 'Fl -[a-z][-a-z]*' | sed 's/^Fl /-/' | sort -u |
		    sed "s/^/$cmd: /" >> "$TMP/mancmdopts"
	done < "$TMP/mancmdlines"
	why=""
	diff -u "$TMP/helpopts" "$TMP/manopts" > "$out" || why="options differ"
	diff -u "$TMP/helpcmds" "$TMP/mancmds" >> "$out" || why="${why:+$why; }commands differ"
	diff -u "$TMP/helpcmdopts" "$TMP/mancmdopts" >> "$out" ||
	    why="${why:+$why; }a command's options differ"
	if [ ! -s "$TMP/helpcmds" ]; then
		not_ok "$name" "alarmctl --help lists no command" "$TMP/help"
	elif [ -z "$why" ]; then
		ok "$name ($(wc -l < "$TMP/helpcmds") commands)"
	else
		not_ok "$name" "$why ('-' lines are --help's, '+' the page's)" "$out"
	fi
fi

# ---- make install / uninstall ----

# Absolute: make runs the install from the top of the tree, BUILD may be either.
dest="$(cd "$TMP" && pwd)/root"
name="install: make install DESTDIR PREFIX=/usr installs the expected tree"
{
	echo usr/sbin/alarm-supervisor
	echo usr/sbin/alarmctl
	echo usr/share/doc/alarm-digest/examples/alarm-supervisor.conf
	echo usr/share/man/man5/alarm-supervisor.conf.5
	echo usr/share/man/man8/alarm-supervisor.8
	echo usr/share/man/man8/alarmctl.8
	echo usr/lib/systemd/system/alarm-supervisor.service
	echo usr/lib/sysusers.d/alarm-digest.conf
} | sort > "$TMP/want"
if ! $MAKE --no-print-directory BUILD="$BUILD" DESTDIR="$dest" PREFIX=/usr install \
    > "$TMP/install.log" 2>&1; then
	not_ok "$name" "make install failed" "$TMP/install.log"
elif (cd "$dest" && find . ! -type d | sed 's,^\./,,' | sort) | diff -u "$TMP/want" - > "$out"; then
	ok "$name"
else
	not_ok "$name" "'-' lines are expected, '+' installed" "$out"
fi

name="install: the installed programs run (--version, --help)"
why=""
for prog in alarm-supervisor alarmctl; do
	bin="$dest/usr/sbin/$prog"
	if ! "$bin" --version > "$out" 2>&1; then
		why="${why:+$why; }$prog --version failed"
	elif ! grep -q "^$prog $version\\b" "$out"; then
		why="${why:+$why; }$prog --version says \"$(head -n 1 "$out")\", not $prog $version"
	fi
	"$bin" --help > "$out" 2>&1 || why="${why:+$why; }$prog --help failed"
done
# The unit names the installed programs, wherever PREFIX put them.
unit="$dest/usr/lib/systemd/system/alarm-supervisor.service"
grep -q '^ExecStart=/usr/sbin/alarm-supervisor ' "$unit" ||
    why="${why:+$why; }the installed unit's ExecStart= is not /usr/sbin/alarm-supervisor"
if grep -n '^Exec.*=[^ ]*/\(alarm-supervisor\|alarmctl\)\( \|$\)' "$unit" |
    grep -v '=/usr/sbin/\|=/bin/kill' > "$out"; then
	why="${why:+$why; }the installed unit runs a program not in /usr/sbin: $(head -n 1 "$out")"
fi
if [ -z "$why" ]; then ok "$name"; else not_ok "$name" "$why"; fi

name="install: make uninstall removes every file make install put there"
if ! $MAKE --no-print-directory BUILD="$BUILD" DESTDIR="$dest" PREFIX=/usr uninstall \
    > "$TMP/uninstall.log" 2>&1; then
	not_ok "$name" "make uninstall failed" "$TMP/uninstall.log"
elif (cd "$dest" && find . ! -type d) > "$out" && [ -s "$out" ]; then
	not_ok "$name" "files left behind" "$out"
elif [ -e "$dest/usr/share/doc/alarm-digest" ]; then
	not_ok "$name" "usr/share/doc/alarm-digest left behind"
else
	ok "$name"
fi

# ---- make deb ----

deb=""
name="deb: make deb builds the package, lintian clean"
if ! missing=$(need dpkg-buildpackage dh lintian fakeroot); then
	not_ok "$name" "$missing is not installed (make deps-pkg)"
elif ! $MAKE --no-print-directory BUILD="$BUILD" deb > "$TMP/deb.log" 2>&1; then
	not_ok "$name" "make deb failed" "$TMP/deb.log"
else
	deb=$(ls "$BUILD"/deb/alarm-digest_"$version"-*_*.deb 2>/dev/null | head -n 1)
	if [ -z "$deb" ]; then
		not_ok "$name" "no $BUILD/deb/alarm-digest_$version-*_*.deb" "$TMP/deb.log"
	else
		ok "$name"
	fi
fi

# The checks below read the .deb; without one each fails, saying so.
with_deb() {
	[ -n "$deb" ] && return 0
	not_ok "$1" "no package was built (see the make deb check)"
	return 1
}

name="deb: dpkg-deb -c lists the expected files"
if with_deb "$name"; then
	{
		echo etc/alarm-digest/alarm-supervisor.conf
		echo lib/systemd/system/alarm-supervisor.service
		echo usr/lib/sysusers.d/alarm-digest.conf
		echo usr/sbin/alarm-supervisor
		echo usr/sbin/alarmctl
		for f in DESIGN.md.gz PROTOCOL.md.gz README.Debian README.md.gz changelog.Debian.gz \
		    changelog.gz copyright; do
			echo "usr/share/doc/alarm-digest/$f"
		done
		echo usr/share/lintian/overrides/alarm-digest
		echo usr/share/man/man5/alarm-supervisor.conf.5.gz
		echo usr/share/man/man8/alarm-supervisor.8.gz
		echo usr/share/man/man8/alarmctl.8.gz
		echo var/lib/alarm-digest/
	} | sort > "$TMP/want"
	# Files, and the one directory that matters: the state directory.
	dpkg-deb -c "$deb" | awk '{ print $NF }' | sed 's,^\./,,' |
	    grep -v -e '/$' -e '^$' > "$TMP/got"
	dpkg-deb -c "$deb" | awk '{ print $NF }' | sed 's,^\./,,' |
	    grep -x 'var/lib/alarm-digest/' >> "$TMP/got"
	if sort "$TMP/got" | diff -u "$TMP/want" - > "$out"; then
		ok "$name"
	else
		not_ok "$name" "'-' lines are expected, '+' in the package" "$out"
	fi
fi

name="deb: control fields (dpkg-deb -f)"
if with_deb "$name"; then
	why=""
	[ "$(dpkg-deb -f "$deb" Package)" = alarm-digest ] || why="Package is not alarm-digest"
	v=$(dpkg-deb -f "$deb" Version)
	case "$v" in
	"$version"-[0-9]*) ;;
	*) why="${why:+$why; }Version $v is not $version-N (common/version.h)" ;;
	esac
	[ "$(dpkg-deb -f "$deb" Architecture)" = "$(dpkg --print-architecture)" ] ||
	    why="${why:+$why; }Architecture is not $(dpkg --print-architecture)"
	dep=$(dpkg-deb -f "$deb" Depends)
	for d in adduser libc6 libnats libjson-c liblmdb libbsd libinih libssl libuuid; do
		case "$dep" in
		*"$d"*) ;;
		*) why="${why:+$why; }Depends lacks $d: $dep" ;;
		esac
	done
	case "$dep" in *'${'*) why="${why:+$why; }Depends holds an unexpanded variable: $dep" ;; esac
	if [ -z "$why" ]; then ok "$name"; else not_ok "$name" "$why"; fi
fi

# The control archive: conffiles and the maintainer scripts.
ctrl="$TMP/control"
if [ -n "$deb" ]; then
	rm -rf "$ctrl"
	mkdir -p "$ctrl"
	dpkg-deb --ctrl-tarfile "$deb" | tar -xf - -C "$ctrl"
fi

name="deb: conffiles lists /etc/alarm-digest/alarm-supervisor.conf"
if with_deb "$name"; then
	if grep -qx /etc/alarm-digest/alarm-supervisor.conf "$ctrl/conffiles" 2>/dev/null; then
		ok "$name"
	else
		not_ok "$name" "not in conffiles" "$ctrl/conffiles"
	fi
fi

name="deb: postinst creates the alarm-digest account and its state directory"
if with_deb "$name"; then
	why=""
	p="$ctrl/postinst"
	grep -q 'adduser --system --group .*--home /var/lib/alarm-digest' "$p" 2>/dev/null &&
	    grep -q '^[[:space:]]*--no-create-home .*alarm-digest$' "$p" ||
	    why="no adduser --system --group --home /var/lib/alarm-digest ... alarm-digest"
	grep -q 'chown alarm-digest:alarm-digest /var/lib/alarm-digest' "$p" ||
	    why="${why:+$why; }/var/lib/alarm-digest is not given to alarm-digest"
	grep -q 'chmod 0750 /var/lib/alarm-digest' "$p" ||
	    why="${why:+$why; }/var/lib/alarm-digest is not made 0750"
	sh -n "$p" 2>"$out" || why="${why:+$why; }postinst is not valid sh: $(head -n 1 "$out")"
	if [ -z "$why" ]; then ok "$name"; else not_ok "$name" "$why" "$p"; fi
fi

name="deb: the unit is enabled, never started by the package"
if with_deb "$name"; then
	why=""
	grep -q 'deb-systemd-helper .*enable.*alarm-supervisor\.service' "$ctrl/postinst" ||
	    why="postinst does not enable alarm-supervisor.service"
	# An upgrade may restart a running service (try-restart), never start one.
	grep -q 'deb-systemd-invoke try-restart .*alarm-supervisor\.service' \
	    "$ctrl/postinst" || why="${why:+$why; }postinst does not try-restart it on upgrade"
	grep -q 'deb-systemd-invoke stop alarm-supervisor\.service' "$ctrl/prerm" 2>/dev/null ||
	    why="${why:+$why; }prerm does not stop it on removal"
	if grep -l 'deb-systemd-invoke[^|]* \(start\|restart\|\$_dh_action\)' "$ctrl"/* \
	    > "$out" 2>/dev/null; then
		why="${why:+$why; }a maintainer script may start the unit: $(tr '\n' ' ' < "$out")"
	fi
	if [ -z "$why" ]; then ok "$name"; else not_ok "$name" "$why"; fi
fi

# The package's configuration file: the shipped one with state_dir and
# [service] user set for the package, and nothing else changed; it parses.
name="deb: /etc/alarm-digest/alarm-supervisor.conf is the shipped file set up for the package"
if with_deb "$name"; then
	rm -rf "$TMP/data"
	mkdir -p "$TMP/data"
	dpkg-deb -x "$deb" "$TMP/data"
	conf="$TMP/data/etc/alarm-digest/alarm-supervisor.conf"
	sort > "$TMP/want" <<-'EOF'
	-state_dir = ./state
	-user =
	+state_dir = /var/lib/alarm-digest
	+user = alarm-digest
	EOF
	diff -U0 conf/alarm-supervisor.conf "$conf" | grep '^[-+][^-+]' | sort > "$TMP/got"
	# -t checks the account exists: check the rest with the account emptied.
	sed '/^\[service\]/,/^\[/s/^user = alarm-digest$/user =/' "$conf" > "$TMP/conf-noacct"
	if ! diff -u "$TMP/want" "$TMP/got" > "$out"; then
		not_ok "$name" "its changes from conf/alarm-supervisor.conf differ ('+' found)" "$out"
	elif ! "$BUILD/alarm-supervisor" -t -c "$TMP/conf-noacct" > "$out" 2>&1; then
		not_ok "$name" "alarm-supervisor -t rejects it" "$out"
	else
		ok "$name"
	fi
fi

# The build needs what make needs: every -dev package scripts/deps.sh
# installs, but the fuzzers' libclang-rt (make deb builds no fuzzer).
name="deb: Build-Depends has every -dev package of scripts/deps.sh"
sed -n '/^PKGS="/,/"$/p' scripts/deps.sh | tr ' "' '\n\n' | grep -- '-dev$' |
    grep -v '^libclang-rt' | sort -u > "$TMP/want"
sed -n '/^Build-Depends:/,/^[A-Z]/p' debian/control | sed 's/^Build-Depends://' |
    tr ',' '\n' | sed 's/^[[:space:]]*//; s/[[:space:](<].*//' | grep -- '-dev$' |
    sort -u > "$TMP/got"
if [ ! -s "$TMP/want" ]; then
	not_ok "$name" "read no -dev package from scripts/deps.sh"
elif comm -23 "$TMP/want" "$TMP/got" > "$out" && [ -s "$out" ]; then
	not_ok "$name" "debian/control lacks $(tr '\n' ' ' < "$out")"
else
	ok "$name"
fi

name="deb: debian/changelog's version is common/version.h's"
if ! missing=$(need dpkg-parsechangelog); then
	not_ok "$name" "$missing is not installed (make deps-pkg)"
else
	v=$(dpkg-parsechangelog -l debian/changelog -S Version)
	case "$v" in
	"$version"-[0-9]*) ok "$name" ;;
	*) not_ok "$name" "debian/changelog says $v, common/version.h $version" ;;
	esac
fi

[ "${PKG_KEEP:-0}" = 1 ] || rm -rf "$TMP"
passed=$((n - failed))
echo "pkg: $passed passed, $failed failed ($PLAN planned)"
[ "$failed" -eq 0 ] && [ "$n" -eq "$PLAN" ]
