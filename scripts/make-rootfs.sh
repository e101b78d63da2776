#!/usr/bin/env bash
# Builds a small busybox root filesystem tarball from Debian's busybox-static package, for the
# demo, the tests and the benchmarks. No registry, no network: only the host's /bin/busybox.
#
#   scripts/make-rootfs.sh OUT.tar
set -euo pipefail
out=${1:?usage: make-rootfs.sh OUT.tar}
bb=$(command -v busybox || true)
if [ -z "$bb" ] || ! "$bb" --list >/dev/null 2>&1; then
  echo "make-rootfs: busybox not found: apt-get install busybox-static" >&2
  exit 1
fi
if ! file_out=$(LC_ALL=C readelf -d "$bb" 2>/dev/null) || echo "$file_out" | grep -q NEEDED; then
  echo "make-rootfs: $bb is dynamically linked: install busybox-static (not busybox)" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
r=$work/rootfs
mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,home/app,proc,sys,dev,run,var/tmp}
cp "$bb" "$r/bin/busybox"
for applet in $("$bb" --list); do
  [ "$applet" = busybox ] && continue
  ln -s busybox "$r/bin/$applet"
done
cat > "$r/etc/passwd" <<'PW'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PW
cat > "$r/etc/group" <<'GR'
root:x:0:
daemon:x:1:
tty:x:5:
wheel:x:10:app
app:x:1000:
nogroup:x:65534:
GR
echo 'hosts: files dns' > "$r/etc/nsswitch.conf"
chmod 1777 "$r/tmp" "$r/var/tmp"
chmod 700 "$r/root"
tar --numeric-owner --owner=0 --group=0 -C "$r" -cf "$work/rootfs.tar" --exclude=./home/app .
# home/app belongs to app (1000:1000): append it with that owner.
tar --numeric-owner --owner=1000 --group=1000 -C "$r" -rf "$work/rootfs.tar" ./home/app
mv "$work/rootfs.tar" "$out"
echo "$out"
