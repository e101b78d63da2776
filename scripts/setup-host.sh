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

# mDNS peers for the simulated-LAN tests (issue 15): avahi-daemon (and avahi-utils' browse and
# resolve, over a private bus) and python-zeroconf run only inside network namespaces the
# tests make (crates/cli/tests/mdns/lan.rs). Without recommends:
# libnss-mdns would rewrite nsswitch.conf's hosts line. The package's own daemon must never
# run on this machine's real interfaces: when this script installs it, services are kept from
# starting during the install (policy-rc.d 101, Debian's mechanism, if none is in place), and
# whatever started anyway is stopped and disabled afterwards.
mdns_missing=()
for p in avahi-daemon avahi-utils python3-zeroconf; do
  dpkg -s "$p" >/dev/null 2>&1 || mdns_missing+=("$p")
done
if [ ${#mdns_missing[@]} -gt 0 ]; then
  echo "setup-host: installing ${mdns_missing[*]} (no recommends, no service started)"
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${mdns_missing[@]}" >/dev/null
  [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
  # Only an avahi-daemon this script installed: one that was there before is the owner's.
  if [[ " ${mdns_missing[*]} " == *" avahi-daemon "* ]]; then
    if [ -d /run/systemd/system ]; then
      systemctl disable --now avahi-daemon.socket avahi-daemon.service >/dev/null 2>&1 || true
      systemctl mask avahi-daemon.socket avahi-daemon.service >/dev/null 2>&1 || true
    fi
    update-rc.d avahi-daemon disable >/dev/null 2>&1 || true
    avahi-daemon --kill >/dev/null 2>&1 || true
  fi
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
