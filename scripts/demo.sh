#!/usr/bin/env bash
# The main demo, from a fresh Debian machine (run as root, e.g. `sudo bash scripts/demo.sh`):
# installs what cove needs, builds it, makes a busybox image locally (no registry, no network),
# then runs containers as the ordinary user `covetest` — no root, no daemon.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo: run as root (sudo bash scripts/demo.sh): it installs packages and creates the demo user" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:/root/.cargo/bin:$PATH"
bash scripts/setup-host.sh
echo "== building cove (release)"
cargo build --release -p cove 2>&1 | tail -n 1
install -m 0755 target/release/cove target/release/cove-monitor /usr/local/bin/
demo=/tmp/cove-demo; rm -rf "$demo"; mkdir -p "$demo"; chmod 755 "$demo"
scripts/make-rootfs.sh "$demo/rootfs.tar" >/dev/null; chmod 644 "$demo/rootfs.tar"

as_user() { runuser -u covetest -- env -i HOME=/home/covetest USER=covetest LOGNAME=covetest PATH=/usr/local/bin:/usr/bin:/bin "$@"; }
show() { echo; echo "covetest\$ $*"; as_user "$@"; }

echo "== as the unprivileged user covetest (uid $(id -u covetest))"
show cove import "$demo/rootfs.tar" bb --change 'CMD ["sh"]'
show cove images
show cove run --rm bb sh -c 'echo hello from a rootless container; id; echo "pid $$ in its own pid namespace"'
show cove run --rm -e GREETING=hi -w /tmp --hostname h1 --read-only --tmpfs /run bb sh -c 'echo $GREETING from $(hostname) in $(pwd); touch /x 2>&1 | head -1'
show cove run --rm -u app bb sh -c 'whoami; id'
show cove run --rm bb sh -c 'grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status'
echo; echo "covetest\$ cove run --rm bb sh -c 'exit 3'; echo exit=\$?"
as_user cove run --rm bb sh -c 'exit 3' || echo "exit=$?"
show cove run -d --name web -p 127.0.0.1:18088:80 bb sh -c 'echo "hello from a published port" > /tmp/index.html; httpd -f -p 80 -h /tmp'
sleep 0.5
echo; echo "covetest\$ wget -qO- http://127.0.0.1:18088/"; as_user busybox wget -qO- http://127.0.0.1:18088/
show cove exec web ps
show cove logs web
# Names: every network has DNS at its gateway (container names and aliases; answered locally).
show cove network create demonet
show cove run -d --name db --network demonet --network-alias postgres bb sh -c 'echo "db here" > /tmp/index.html; httpd -f -p 80 -h /tmp'
show cove run --rm --network demonet bb sh -c 'nslookup postgres | grep -A1 ^Name:; wget -qO- http://db/'
show cove dns resolve db.demonet
show cove rm -f web db
show cove network rm demonet
show cove info
as_user cove system migrate
echo; echo "demo done: cove is installed as /usr/local/bin/cove; try it as any user."
