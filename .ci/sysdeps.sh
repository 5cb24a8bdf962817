#!/usr/bin/env bash
# System packages the tests use: tshark (pyshark's engine), tcpdump (captures), sudo (the capture rule).
# Installs them when running as root; otherwise says what is missing (those tests then skip).
set -euo pipefail
missing=()
for tool in tshark tcpdump sudo editcap visudo; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages for: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tshark tcpdump sudo >/dev/null
else
    echo "warning: missing ${missing[*]}; install tshark, tcpdump and sudo (as root) or those tests skip" >&2
fi
