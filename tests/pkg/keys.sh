#!/bin/sh
# Every key of common/config.c's table, one per line, in table order:
#   SECTION KEY DEFAULT RELOAD
# DEFAULT is written as in the config file ("" when empty); RELOAD is
# "restart" for rows flagged R (KEY_RESTART), "reload" otherwise.  Read from
# the ROW(...) entries of config_keys[], so a new row shows up here without
# anyone editing this script.
set -eu
CONFIG_C=${1:?usage: keys.sh common/config.c}

awk '
/^static const struct key_def config_keys\[\] = \{/ { on = 1; next }
on && /^};/ { exit }
!on { next }
{
	sub(/\/\*.*\*\//, "")
	if (buf == "" && $0 !~ /ROW\(/)
		next
	buf = buf " " $0
	# A row ends where its parentheses balance.
	t = buf
	nopen = gsub(/\(/, "(", t)
	nclose = gsub(/\)/, ")", t)
	if (nopen != nclose)
		next
	s = buf
	buf = ""
	sub(/^[^(]*ROW\(/, "", s)
	n = split(s, arg, ",")
	sec = arg[1]; name = arg[2]; flags = arg[4]
	gsub(/[" \t]/, "", sec); gsub(/[" \t]/, "", name)
	# The default is the last string literal of the row.
	d = s; def = ""
	while (match(d, /"[^"]*"/)) {
		def = substr(d, RSTART + 1, RLENGTH - 2)
		d = substr(d, RSTART + RLENGTH)
	}
	reload = (flags ~ /(^|[^A-Z_])(R|KEY_RESTART)([^A-Z_]|$)/) ? "restart" : "reload"
	printf "%s %s %s %s\n", sec, name, (def == "" ? "\"\"" : def), reload
}
' "$CONFIG_C"
