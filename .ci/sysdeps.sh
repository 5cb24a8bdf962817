#!/usr/bin/env bash
# System packages the tests use: tshark (pyshark's engine), tcpdump (captures), sudo (the capture rule), and the
# two header packages the real Ollama build needs (Go's module zip leaves out llama.cpp's vendor/ directory:
# nlohmann/json.hpp from nlohmann-json3-dev, stb/stb_image.h from libstb-dev; see tests/support/real_ollama.py).
# Installs them when running as root; otherwise says what is missing (those tests then skip).
set -euo pipefail
packages=(tshark tcpdump sudo nlohmann-json3-dev libstb-dev)
missing=()
for tool in tshark tcpdump sudo editcap visudo; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
for header in /usr/include/nlohmann/json.hpp /usr/include/stb/stb_image.h; do
    [ -f "$header" ] || missing+=("$header")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages for: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
else
    echo "warning: missing ${missing[*]}; install ${packages[*]} (as root) or those tests skip" >&2
fi
