#!/usr/bin/env bash
# Print a Python 3.12 interpreter (for the mitmproxy 12.x compatibility run), or nothing.
for candidate in python3.12 "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12; do
    if [ -n "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
        command -v "$candidate"
        exit 0
    fi
done
