#!/usr/bin/env bash
# Prepares a Debian host for cove's demo and tests (run as root): the packages cove and its
# tests use, a test user WITH a subordinate id range (covetest) and one WITHOUT (covenosub),
# and /dev/fuse + /dev/net/tun opened to users as udev would on a host that has it.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "setup-host: run as root" >&2; exit 1; }

pkgs=(uidmap busybox-static iproute2 libseccomp-dev pkg-config python3 tar passwd util-linux procps bsdutils nftables gcc libc6-dev fuse-overlayfs bind9-dnsutils docker-registry skopeo apache2-utils curl passt slirp4netns)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-host: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q "${missing[@]}" >/dev/null
fi

add_user() { # name, with_range(0|1), range_start
  local u=$1 with=$2 start=$3
  id "$u" >/dev/null 2>&1 || useradd -m -s /bin/bash "$u"
  touch /etc/subuid /etc/subgid
  sed -i "/^$u:/d" /etc/subuid /etc/subgid
  if [ "$with" = 1 ]; then
    echo "$u:$start:65536" >> /etc/subuid
    echo "$u:$start:65536" >> /etc/subgid
  fi
}
add_user covetest 1 200000
add_user covenosub 0 0

# Without udev these stay 0600; udev's default rules make them 0666.
for d in /dev/fuse /dev/net/tun; do
  [ -e "$d" ] && chmod 0666 "$d" || true
done
