#!/usr/bin/env bash
# Installs the system packages listed in .ci/sysdeps.txt (the one list; `make test` and `.ci/run` call this).
# As root with apt-get: installs whatever is missing. Otherwise: one line naming what is missing (the tests that
# need it then skip) and exit 0, so `make test` still runs the rest.
set -euo pipefail
list="$(dirname "$0")/sysdeps.txt"
missing=()
while read -r package probes; do
    case "$package" in '' | '#'*) continue ;; esac
    for probe in ${probes%%#*}; do
        if [[ "$probe" == /* ]] && [ -e "$probe" ]; then continue; fi
        if [[ "$probe" != /* ]] && command -v "$probe" >/dev/null 2>&1; then continue; fi
        missing+=("$package")
        break
    done
done <"$list"
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
else
    echo "warning: missing system packages: ${missing[*]} (as root: make sysdeps; until then the tests that need them skip)" >&2
fi
