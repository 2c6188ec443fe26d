"""Memory per idle keep-alive connection (see bench/conns): each proxy, alone
on CPU 1, gets CONNS client connections one after another, each sending one
request and reading its response, then left open and idle; the proxy's
resident memory (VmRSS) grows by so much per connection. Kernel socket
buffers are not in it (they are the same for every proxy)."""
import os, resource, signal, socket, subprocess, sys, time
from peers import Peers, stop

CONNS = int(sys.argv[1])
WARM = 200
peers = Peers("webinfra-conns-bench-", tls=False, one_process=True)
PROXIES = [
    ("webinfra", 8081, peers.webinfra_cmd()),
    ("haproxy", 8082, peers.haproxy_cmd()),
    ("nginx", 8083, peers.nginx_cmd()),
]
REQUEST = b"GET /small HTTP/1.1\r\nHost: www.foobar.com\r\n\r\n"

def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit(f"no VmRSS for {pid}")

def connect(port, deadline):
    """One more idle keep-alive connection: a request, its whole response."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(REQUEST)
    got = b""
    while not (b"\r\n\r\n" in got and got.endswith(b"hello world\n")):
        if time.time() > deadline:
            raise SystemExit(f"no whole response on port {port}: {got[:200]!r}")
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit(f"port {port} closed the connection: {got[:200]!r}")
        got += chunk
    return s

def wait_for(port, deadline=60):
    end = time.time() + deadline
    while time.time() < end:
        try:
            connect(port, end).close()
            return
        except (OSError, SystemExit):
            time.sleep(0.2)
    raise SystemExit(f"nothing answered on port {port}")

def per_connection(cmd, port):
    p = subprocess.Popen(["taskset", "-c", "1", *cmd], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    held = []
    try:
        wait_for(port)
        deadline = time.time() + 300
        held += [connect(port, deadline) for _ in range(WARM)]
        before = rss_kib(p.pid)
        held += [connect(port, deadline) for _ in range(CONNS)]
        after = rss_kib(p.pid)
        return (after - before) * 1024 / CONNS, before, after
    finally:
        for s in held:
            s.close()
        stop(p, 30)

for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda *_: sys.exit(1))
# Room for the connections, here and in the proxies started from here.
room = max(CONNS + 2000, 16384)  # HAProxy wants about twice its maxconn (5000)
resource.setrlimit(resource.RLIMIT_NOFILE, (room, room))
backend = subprocess.Popen(["taskset", "-c", "0", *peers.backend_cmd()],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
try:
    wait_for(9001)
    wait_for(9002)
    rows = []
    for name, port, cmd in PROXIES:
        bytes_per, before, after = per_connection(cmd, port)
        rows.append((name, bytes_per, before, after))
        print(f"{name:9} {bytes_per:8.0f} bytes per idle connection (RSS {before} -> {after} KiB)", flush=True)
    haproxy = dict((r[0], r[1]) for r in rows)["haproxy"]
    print()
    print(f"resident memory per idle keep-alive connection ({CONNS} connections after {WARM} to warm up; one request each)")
    print(f"{'proxy':9} {'bytes/conn':>10} {'RSS before':>11} {'RSS after':>10}")
    for name, bytes_per, before, after in rows:
        print(f"{name:9} {bytes_per:10.0f} {before:8} KiB {after:7} KiB")
    print(f"(HAProxy: {haproxy:.0f} bytes per connection)")
finally:
    os.killpg(backend.pid, signal.SIGTERM)
    backend.wait()
