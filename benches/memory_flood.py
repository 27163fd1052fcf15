#!/usr/bin/env python3
"""The memory floods of the hardening issue, against any edge-gw binary.

Starts `BIN --master --legacy-v1` on loopback with a fresh state dir, runs
one flood and prints the master's RSS (from /proc) before, during and
after it, plus the memory-budget figures of /api/status when the binary
has them. No assertion: tests/memory_budget.rs asserts bounds; this
prints the figures BENCHMARKS.md quotes, for an old binary as well.

  benches/memory_flood.py BIN sprawl  [--n 120] [--extra 'legacy_retention = 2']
  benches/memory_flood.py BIN partial [--n 100]

sprawl:  N legacy clients under fresh uuids, each sends a key request and
         one ~1 MiB report, reads the key reply and leaves.
partial: N legacy clients each send a key request and all but the last
         byte of a ~1 MiB report, and hold it.
"""

import argparse
import json
import os
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
import zlib

MIB = 1 << 20


def frame(version, msg_type, uuid, body):
    length = 45 + len(body)
    head = struct.pack("<BBBBI", version, msg_type, 0, 0, length)
    crc = zlib.crc32(head) & 0xFFFFFFFF
    return head + struct.pack("<I", crc) + uuid.encode().ljust(33, b"\0") + body


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return -1


def status(http, token):
    req = urllib.request.Request(
        f"http://127.0.0.1:{http}/api/status",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("flood", choices=["sprawl", "partial"])
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--extra", default="", help="more config file lines")
    ap.add_argument("--wait", type=float, default=4.0, help="seconds to wait after")
    a = ap.parse_args()

    state = tempfile.mkdtemp(prefix="edge-gw-flood-")
    cfg = os.path.join(state, "master.toml")
    with open(cfg, "w") as f:
        f.write("handshakes_per_ip = 100000\n" + a.extra.replace("\\n", "\n") + "\n")
    port, http = free_port(), free_port()
    log = open(os.path.join(state, "master.log"), "w")
    m = subprocess.Popen(
        [a.bin, "--master", "--legacy-v1", "--listen", f"127.0.0.1:{port}",
         "--http", f"127.0.0.1:{http}", "--state-dir", os.path.join(state, "m"),
         "--config", cfg],
        stdout=subprocess.DEVNULL, stderr=log,
    )
    try:
        token_file = os.path.join(state, "m", "api.token")
        for _ in range(200):
            if os.path.exists(token_file) and open(token_file).read().endswith("\n"):
                break
            time.sleep(0.05)
        token = open(token_file).read().strip()
        time.sleep(0.3)
        print(f"{a.flood} x {a.n}: RSS before {rss_mib(m.pid):.0f} MiB")
        held = []
        for i in range(a.n):
            uuid = f"{a.flood}-{i}"
            s = socket.create_connection(("127.0.0.1", port))
            report = frame(1, 7, uuid, b"r" * (MIB - 1024))
            try:
                s.sendall(frame(1, 1, uuid, b""))
                if a.flood == "sprawl":
                    s.sendall(report)
                    head = b""
                    while len(head) < 45:
                        head += s.recv(45 - len(head))
                    (length,) = struct.unpack("<I", head[4:8])
                    rest = length - 45
                    while rest > 0:
                        rest -= len(s.recv(rest))
                    s.shutdown(socket.SHUT_WR)
                    s.close()
                else:
                    s.sendall(report[:-1])
                    held.append(s)
            except OSError as e:
                held.append(s)
                print(f"  connection {i}: {e}")
        time.sleep(1.0)
        st = status(http, token)
        print(f"  RSS right after: {rss_mib(m.pid):.0f} MiB; "
              f"connections {st['connections']}, agents known {st['agents']['known']}")
        if "memory_budget" in st:
            print(f"  budget: {json.dumps(st['memory_budget'])}")
        for s in held:
            s.close()
        time.sleep(a.wait)
        st = status(http, token)
        print(f"  RSS {a.wait:.0f} s after the clients left: {rss_mib(m.pid):.0f} MiB; "
              f"agents known {st['agents']['known']}")
        if "memory_budget" in st:
            print(f"  budget: {json.dumps(st['memory_budget'])}")
    finally:
        m.terminate()
        m.wait()


if __name__ == "__main__":
    main()
