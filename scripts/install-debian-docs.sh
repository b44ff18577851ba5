#!/usr/bin/env bash
# Install Debian documentation packages that ship real Japanese text (for the demo and tests).
# Packages already installed are left alone; any that cannot be installed are skipped with a message.
set -uo pipefail

missing=()
for pkg in "$@"; do
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        continue
    fi
    missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "kiban: not a Debian/Ubuntu machine (no apt-get); cannot install: ${missing[*]}" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "kiban: not root and no sudo; install these yourself: apt-get install ${missing[*]}" >&2
        exit 0
    fi
fi
echo "kiban: installing Debian documentation packages: ${missing[*]}" >&2
$SUDO apt-get update -qq >/dev/null 2>&1 || echo "kiban: apt-get update failed; trying the cached lists" >&2
for pkg in "${missing[@]}"; do
    if DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null 2>&1; then
        echo "kiban: installed $pkg" >&2
    else
        echo "kiban: could not install $pkg; skipping it" >&2
    fi
done
exit 0
