"""One mDNS query from a LAN host's namespace (crates/cli/tests/mdns/lan.rs), printed as JSON.

usage: mdns_query.py DEST NAME TYPE TIMEOUT [--qu] (DEST: ADDR or ADDR%IFNAME)

From an ephemeral port (a legacy unicast query, RFC 6762 §6.7) unless --qu (then from 5353 with
the unicast-response bit, §5.4), to DEST:5353 (224.0.0.251, ff02::fb%eth0 or a unicast address),
with a fixed ID; collects every reply until TIMEOUT seconds have passed and prints one JSON
object: {"replies": [{"from": ADDR, "port": PORT, "id": ID, "questions": [...], "answers":
[{name, type, ttl, unique, data}], "additionals": [...]}]}. `dig -p 5353 @224.0.0.251` cannot
do this: dig 9.18 connects its socket to the address it asks, and the kernel drops the replies,
which come from the responder's own address.
"""

import ipaddress
import json
import random
import socket
import sys
import time

from zeroconf import DNSIncoming

dest, name, qtype, timeout = sys.argv[1], sys.argv[2], sys.argv[3].upper(), float(sys.argv[4])
qu = "--qu" in sys.argv[5:]
TYPES = {"A": 1, "PTR": 12, "TXT": 16, "AAAA": 28, "SRV": 33, "ANY": 255}
NAMES = {v: k for k, v in TYPES.items()}
NAMES[47] = "NSEC"

qid = random.randint(1, 0xFFFF)
q = qid.to_bytes(2, "big") + b"\0\0" + (1).to_bytes(2, "big") + b"\0" * 6
for label in name.rstrip(".").split("."):
    q += bytes([len(label)]) + label.encode()
q += b"\0" + TYPES[qtype].to_bytes(2, "big") + ((0x8001 if qu else 1)).to_bytes(2, "big")

host, _, scope = dest.partition("%")
v6 = ":" in host
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if hasattr(socket, "SO_REUSEPORT"):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
ifindex = socket.if_nametoindex(scope) if scope else 0
if qu:
    # A responder may answer a QU question by multicast all the same (§5.4): listen there too.
    s.bind(("::" if v6 else "0.0.0.0", 5353))
    if v6:
        group = socket.inet_pton(socket.AF_INET6, "ff02::fb") + ifindex.to_bytes(4, sys.byteorder)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group)
    else:
        mreqn = socket.inet_aton("224.0.0.251") + socket.inet_aton("0.0.0.0") + ifindex.to_bytes(4, sys.byteorder)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
if v6 and ifindex:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
s.sendto(q, (host, 5353, 0, ifindex) if v6 else (host, 5353))


def record(r):
    data = None
    if hasattr(r, "address"):
        data = str(ipaddress.ip_address(r.address))
    elif hasattr(r, "alias"):
        data = r.alias
    elif hasattr(r, "server"):
        data = f"{r.priority} {r.weight} {r.port} {r.server}"
    elif hasattr(r, "text"):
        data = r.text.hex()
    return {"name": r.name, "type": NAMES.get(r.type, str(r.type)), "ttl": r.ttl, "unique": r.unique, "data": data}


replies = []
deadline = time.time() + timeout
while True:
    left = deadline - time.time()
    if left <= 0:
        break
    s.settimeout(left)
    try:
        data, addr = s.recvfrom(9000)
    except socket.timeout:
        break
    if len(data) < 12 or not data[2] & 0x80:
        continue  # a query (ours, looped back, or someone else's)
    m = DNSIncoming(data)
    # DNSIncoming keeps answers and additionals together; the header's counts split them.
    ancount = int.from_bytes(data[6:8], "big")
    records = [record(r) for r in m.answers]
    replies.append(
        {
            "from": addr[0],
            "port": addr[1],
            "id": int.from_bytes(data[0:2], "big"),
            "query_id": qid,
            "questions": [{"name": x.name, "type": NAMES.get(x.type, str(x.type))} for x in m.questions],
            "answers": records[:ancount],
            "additionals": records[ancount:],
        }
    )
print(json.dumps({"replies": replies}))
