#!/bin/sh
# Prints the Debian packages that own the shared libraries BINARY loads (one per line, sorted):
# the runtime stage of the Dockerfile installs exactly these.
# usage: runtime_packages.sh BINARY
set -eu
ldd "$1" | awk '/=> \// {print $3}' | while read -r lib; do
  real="$(readlink -f "$lib")"
  # Debian's merged /usr: dpkg may record a library under /lib or /usr/lib.
  for p in "$lib" "$real" "/usr$lib" "${lib#/usr}" "/usr$real" "${real#/usr}"; do
    if owner="$(dpkg -S "$p" 2>/dev/null)"; then
      echo "${owner%%:*}"
      break
    fi
  done
done | sort -u
