#!/usr/bin/env bash
# Prints the first apt source of this machine that serves SUITE's deb packages, read from
# $APT_ETC/sources.list, $APT_ETC/sources.list.d/*.list (one-line form) and
# $APT_ETC/sources.list.d/*.sources (deb822 form, its URIs: field); APT_ETC is /etc/apt unless
# told otherwise. Prints nothing when no source serves SUITE.
#
#   bash scripts/apt-mirror.sh bookworm
set -euo pipefail
suite=${1:?usage: apt-mirror.sh SUITE}
etc=${APT_ETC:-/etc/apt}
shopt -s nullglob
files=()
for f in "$etc/sources.list" "$etc"/sources.list.d/*.list "$etc"/sources.list.d/*.sources; do
  [ -f "$f" ] && files+=("$f")
done
[ ${#files[@]} -gt 0 ] || exit 0
awk -v suite="$suite" '
  function serves(list) { return (" " list " ") ~ (" " suite " ") }
  function stanza_end() {
    if (!found && types ~ /(^| )deb( |$)/ && enabled != "no" && serves(suites) && uris != "") {
      split(uris, u, " "); print u[1]; found = 1; exit
    }
    types = uris = suites = enabled = ""
  }
  FNR == 1 { stanza_end() }
  /^[[:space:]]*#/ { next }
  FILENAME ~ /\.sources$/ {
    if ($0 ~ /^[[:space:]]*$/) { stanza_end(); next }
    field = tolower($1); $1 = ""
    if (field == "types:") types = $0
    else if (field == "uris:") uris = $0
    else if (field == "suites:") suites = $0
    else if (field == "enabled:") enabled = tolower($2)
    next
  }
  $1 == "deb" {
    line = $0; gsub(/\[[^]]*\]/, "", line); split(line, f, " ")
    if (f[3] == suite) { print f[2]; found = 1; exit }
  }
  END { stanza_end() }
' "${files[@]}"
