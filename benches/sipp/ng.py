#!/usr/bin/env python3
"""ng.py -- a tiny rtpengine NG client (bencode over UDP) for load.sh.

  ng.py HOST:PORT ping        -> prints "pong" (exit 0), or why not (exit 1)
  ng.py HOST:PORT count       -> prints how many calls rtpengine lists (NG `list`
                                 with a limit far above any run's calls)
  ng.py HOST:PORT offer CALL-ID FROM-TAG SDP-FILE [FLAG...]
                              -> prints the rewritten SDP (a manual check; flags as
                                 rtpengine's `flags` list, e.g. replace-origin)

Every request is "<cookie> <bencoded dict>"; the reply is "<same cookie> <dict>".
One request, resent every 0.5 s, 3 s in all (rtpengine answers a resent cookie
from its cache). Loopback use only.
"""
import os
import socket
import sys
import time


def encode(value):
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list):
        return b"l" + b"".join(encode(v) for v in value) + b"e"
    if isinstance(value, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        return b"d" + b"".join(encode(k) + encode(v) for k, v in items) + b"e"
    raise TypeError(type(value))


def decode(data, at=0, depth=0):
    """(value, next index); strings stay bytes."""
    if depth > 32:
        raise ValueError("nested too deep")
    c = data[at:at + 1]
    if c == b"i":
        end = data.index(b"e", at)
        return int(data[at + 1:end]), end + 1
    if c in (b"l", b"d"):
        at += 1
        items = []
        while data[at:at + 1] != b"e":
            if at >= len(data):
                raise ValueError("unexpected end")
            v, at = decode(data, at, depth + 1)
            items.append(v)
        if c == b"l":
            return items, at + 1
        return dict(zip(items[::2], items[1::2])), at + 1
    if c.isdigit():
        colon = data.index(b":", at)
        n = int(data[at:colon])
        return data[colon + 1:colon + 1 + n], colon + 1 + n
    raise ValueError("unexpected byte %r at %d" % (c, at))


def request(addr, command):
    cookie = b"ng%d_%d" % (os.getpid(), time.monotonic_ns())
    datagram = cookie + b" " + encode(command)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    deadline = time.monotonic() + 3.0
    for _ in range(6):
        sock.sendto(datagram, addr)
        resend = min(time.monotonic() + 0.5, deadline)
        while True:
            left = resend - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                reply = sock.recv(65535)
            except (socket.timeout, ConnectionRefusedError):
                break
            if reply.startswith(cookie + b" "):
                return decode(reply[len(cookie) + 1:])[0]
        if time.monotonic() >= deadline:
            break
    raise SystemExit("no NG reply from %s:%d within 3 s" % addr)


def main(argv):
    if len(argv) < 3:
        raise SystemExit(__doc__)
    host, _, port = argv[1].rpartition(":")
    addr = (host, int(port))
    what = argv[2]
    if what == "ping":
        reply = request(addr, {"command": "ping"})
        result = reply.get(b"result", b"").decode()
        print(result)
        return 0 if result == "pong" else 1
    if what == "count":
        reply = request(addr, {"command": "list", "limit": 1000000})
        if reply.get(b"result") != b"ok":
            raise SystemExit("list failed: %r" % reply)
        print(len(reply.get(b"calls", [])))
        return 0
    if what == "offer" and len(argv) >= 6:
        with open(argv[5], "rb") as f:
            sdp = f.read()
        command = {"command": "offer", "call-id": argv[3], "from-tag": argv[4], "sdp": sdp}
        if argv[6:]:
            command["flags"] = argv[6:]
        reply = request(addr, command)
        if reply.get(b"result") != b"ok":
            raise SystemExit("offer failed: %r" % reply)
        sys.stdout.write(reply[b"sdp"].decode())
        return 0
    raise SystemExit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
