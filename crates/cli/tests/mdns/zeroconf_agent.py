"""A python-zeroconf peer for cove's simulated-LAN tests (crates/cli/tests/mdns/lan.rs).

Runs inside one LAN host's network namespace, bound to that host's eth0 addresses (argv[1]:
IPv4, argv[2]: IPv6), and serves JSON-line commands from stdin, one reply line each on stdout,
in order: {"ok": true, ...} or {"ok": false, "error": "..."}. Exits at EOF on stdin (the test
process went away). Commands ({"cmd": NAME, ...}):

  resolve          name, type ("A", "AAAA" or null for both), timeout (s), cached (bool: keep
                   what the cache already holds; default false: forget the name first)
                   -> addresses [str], ms (time to the answer)
  browse           type ("_http._tcp.local."), seconds -> instances [{name, type, host, port,
                   addresses, txt}]
  register_host    name, addresses [str] -> answers A/AAAA for name (announced twice, no probe)
  register_service type, instance, port, txt {k: v}, host (default: zc-<ipv4>.local.),
                   addresses (default: this host's) -> name (as registered)
  unregister       name (a host or a service instance registered here) -> sends goodbyes
  watch_goodbye    name -> from now on, goodbyes (TTL 0) for name are kept
  wait_goodbye     name, timeout -> seen (bool), at (unix time, s), type
  goodbyes         -> every goodbye received since start [{name, type, alias, at}]
"""

import ctypes
import ipaddress
import json
import sys
import threading
import time

try:
    # The peer dies with the test even if nothing else stops it (setpriv sets this too).
    ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
except Exception:  # noqa: BLE001 (best effort)
    pass

from zeroconf import (  # noqa: E402
    DNSOutgoing,
    DNSQuestion,
    IPVersion,
    ServiceBrowser,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf.const import (  # noqa: E402
    _CLASS_IN,
    _FLAGS_AA,
    _FLAGS_QR_QUERY,
    _FLAGS_QR_RESPONSE,
    _TYPE_A,
    _TYPE_AAAA,
)
from zeroconf._utils.time import current_time_millis  # noqa: E402

TYPES = {"A": [_TYPE_A], "AAAA": [_TYPE_AAAA], None: [_TYPE_A, _TYPE_AAAA]}
TYPE_NAMES = {1: "A", 28: "AAAA", 12: "PTR", 33: "SRV", 16: "TXT", 47: "NSEC"}
HOST_TYPE = "_cove-lan-host._tcp.local."

ipv4, ipv6 = sys.argv[1], sys.argv[2]
zc = Zeroconf(interfaces=[ipv4, ipv6], ip_version=IPVersion.All)

lock = threading.Condition()
goodbyes = []  # every record received with TTL 0: {name, type, alias, at}
watches = {}  # name -> time the watch began
hosts = {}  # name -> ServiceInfo kept only in the registry's server index
services = {}  # name -> ServiceInfo registered normally


def fqdn(name):
    name = name.lower()
    return name if name.endswith(".") else name + "."


def service_type(name):
    """`_http._tcp`, `_http._tcp.local` and `_http._tcp.local.` alike."""
    name = name.rstrip(".")
    return (name if name.lower().endswith(".local") else name + ".local") + "."


def in_loop(fn, *args):
    """Runs fn(*args) in zeroconf's event loop (its structures are not thread-safe)."""
    done = threading.Event()
    box = {}

    def run():
        try:
            box["v"] = fn(*args)
        except Exception as e:  # noqa: BLE001 (reported to the caller)
            box["e"] = e
        done.set()

    zc.loop.call_soon_threadsafe(run)
    done.wait(10)
    if "e" in box:
        raise box["e"]
    return box.get("v")


# Goodbyes are seen on the raw responses, before the cache: a record the cache never held
# still counts.
_orig_updates = zc.record_manager.async_updates_from_response


def _updates_hook(msg):
    now = time.time()
    seen = []
    for r in msg.answers:
        if r.ttl == 0:
            seen.append(
                {
                    "name": r.name.lower(),
                    "type": TYPE_NAMES.get(r.type, str(r.type)),
                    "alias": getattr(r, "alias", None) and r.alias.lower(),
                    "at": now,
                }
            )
    if seen:
        with lock:
            goodbyes.extend(seen)
            lock.notify_all()
    _orig_updates(msg)
    # Whatever the packet brought is in the cache now: wake a waiting resolve.
    with lock:
        lock.notify_all()


zc.record_manager.async_updates_from_response = _updates_hook


def cached_addresses(name, types):
    out = []
    now = current_time_millis()
    for t in types:
        for r in zc.cache.get_all_by_details(name, t, _CLASS_IN):
            if not r.is_expired(now):
                addr = str(ipaddress.ip_address(r.address))
                if addr not in out:
                    out.append(addr)
    return out


def forget(name):
    def run():
        recs = [r for r in list(zc.cache.entries_with_name(name))]
        zc.cache.async_remove_records(recs)

    in_loop(run)


def cmd_resolve(c):
    name, types = fqdn(c["name"]), TYPES[c.get("type")]
    timeout = float(c.get("timeout", 3))
    if not c.get("cached", False):
        forget(name)
    t0 = time.time()
    next_query = t0
    while True:
        found = cached_addresses(name, types)
        if found:
            return {"addresses": found, "ms": round((time.time() - t0) * 1000, 2)}
        now = time.time()
        if now - t0 >= timeout:
            return {"addresses": [], "ms": None}
        if now >= next_query:
            out = DNSOutgoing(_FLAGS_QR_QUERY)
            for t in types:
                out.add_question(DNSQuestion(name, t, _CLASS_IN))
            zc.send(out)
            next_query = now + 1
        with lock:
            lock.wait(min(next_query - time.time(), t0 + timeout - time.time(), 0.05))


def info_dict(info):
    txt = {}
    for k, v in (info.properties or {}).items():
        k = k.decode() if isinstance(k, bytes) else str(k)
        txt[k] = v.decode(errors="replace") if isinstance(v, bytes) else v
    return {
        "name": info.name,
        "type": info.type,
        "host": info.server,
        "port": info.port,
        "addresses": info.parsed_addresses(IPVersion.All),
        "txt": txt,
    }


def cmd_browse(c):
    type_ = service_type(c["type"])
    names = []

    def on_change(zeroconf, service_type, name, state_change):
        if state_change is not ServiceStateChange.Removed and name not in names:
            names.append(name)

    b = ServiceBrowser(zc, type_, handlers=[on_change])
    time.sleep(float(c.get("seconds", 2)))
    b.cancel()
    out = []
    for name in names:
        info = zc.get_service_info(type_, name, timeout=2000)
        out.append(info_dict(info) if info else {"name": name, "type": type_, "unresolved": True})
    return {"instances": out}


def announce(records, times=2):
    def send():
        out = DNSOutgoing(_FLAGS_QR_RESPONSE | _FLAGS_AA)
        for r in records:
            out.add_answer_at_time(r, 0)
        zc.async_send(out)

    for i in range(times):
        zc.loop.call_soon_threadsafe(zc.loop.call_later, i * 1.0, send)


def cmd_register_host(c):
    name = fqdn(c["name"])
    if name in hosts:
        raise ValueError(f"{name} already registered here")
    label = name.rstrip(".").replace(".", "-")
    info = ServiceInfo(
        HOST_TYPE, f"{label}.{HOST_TYPE}", port=0, server=name, parsed_addresses=list(c["addresses"])
    )

    def add():
        zc.registry.async_add(info)
        # Only the server index answers A/AAAA; out of the type index, no PTR names it.
        zc.registry.types[HOST_TYPE.lower()].remove(info.key)

    in_loop(add)
    hosts[name] = info
    announce(info.dns_addresses())
    return {"name": name}


def cmd_register_service(c):
    type_ = service_type(c["type"])
    host = fqdn(c.get("host") or "zc-" + ipv4.replace(".", "-") + ".local")
    addrs = c.get("addresses") or [ipv4, ipv6]
    info = ServiceInfo(
        type_,
        f"{c['instance']}.{type_}",
        port=int(c["port"]),
        properties=c.get("txt") or {},
        server=host,
        parsed_addresses=addrs,
    )
    zc.register_service(info, allow_name_change=bool(c.get("allow_name_change", False)))
    services[info.name.lower()] = info
    return {"name": info.name, "host": host}


def cmd_unregister(c):
    name = fqdn(c["name"])
    if name in hosts:
        info = hosts.pop(name)
        announce(info.dns_addresses(override_ttl=0), times=1)

        def remove():
            zc.registry.types.setdefault(HOST_TYPE.lower(), []).append(info.key)
            zc.registry.async_remove(info)

        in_loop(remove)
    elif name in services:
        zc.unregister_service(services.pop(name))
    else:
        raise ValueError(f"{name} is not registered here")
    return {}


def matches(g, name):
    return g["name"] == name or g["alias"] == name


def cmd_watch_goodbye(c):
    with lock:
        watches[fqdn(c["name"])] = time.time()
    return {}


def cmd_wait_goodbye(c):
    name = fqdn(c["name"])
    deadline = time.time() + float(c.get("timeout", 3))
    with lock:
        since = watches.get(name, 0)
        while True:
            for g in goodbyes:
                if g["at"] >= since and matches(g, name):
                    return {"seen": True, "at": g["at"], "type": g["type"]}
            left = deadline - time.time()
            if left <= 0:
                return {"seen": False}
            lock.wait(left)


def cmd_goodbyes(c):
    with lock:
        return {"goodbyes": list(goodbyes)}


COMMANDS = {
    "resolve": cmd_resolve,
    "browse": cmd_browse,
    "register_host": cmd_register_host,
    "register_service": cmd_register_service,
    "unregister": cmd_unregister,
    "watch_goodbye": cmd_watch_goodbye,
    "wait_goodbye": cmd_wait_goodbye,
    "goodbyes": cmd_goodbyes,
}

print(json.dumps({"ok": True, "ready": True}), flush=True)
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    try:
        c = json.loads(line)
        reply = {"ok": True}
        reply.update(COMMANDS[c["cmd"]](c))
    except Exception as e:  # noqa: BLE001 (one line back, the agent goes on)
        reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(reply), flush=True)
for info in hosts.values():
    zc.registry.types.setdefault(HOST_TYPE.lower(), []).append(info.key)
zc.close()
