"""Userspace instructions per request (see bench/instructions): each proxy
runs under callgrind on one CPU and serves a fixed number of keep-alive
requests from h2load (HTTP/1.1, 50 connections); it runs twice, with a few
requests and with REQUESTS more, so start-up and shut-down cancel out."""
import os, signal, socket, subprocess, sys, time
from peers import FLOOR, FLOOR_TOKIO, Peers, stop

EXTRA = int(sys.argv[1])
BASE = 1000
# One nginx process (no master), so callgrind follows the process that serves.
peers = Peers("webinfra-instr-bench-", tls=False, one_process=True)
work = peers.work
PROXIES = [
    ("webinfra", 8081, peers.webinfra_cmd()),
    ("haproxy", 8082, peers.haproxy_cmd()),
    ("nginx", 8083, peers.nginx_cmd()),
    ("floor", 8090, FLOOR),
    ("tokio", 8091, FLOOR_TOKIO),
]

def wait_for(port, path="/small", deadline=60):
    end = time.time() + deadline
    while time.time() < end:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            if s.recv(64).startswith(b"HTTP/1.1 200"):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"nothing answered 200 on port {port}")

def instructions(cmd, port, path, requests):
    """Instructions the proxy ran, start to end, serving `requests`."""
    out = f"{work}/callgrind.out"
    if os.path.exists(out):
        os.remove(out)
    p = subprocess.Popen(["taskset", "-c", "1", "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(port)
        load = subprocess.run(["taskset", "-c", "0", "h2load", "--h1", "-n", str(requests), "-c", "50",
                               f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, timeout=600).stdout
        # Every response a 2xx: an error path would be measured otherwise.
        if f"status codes: {requests} 2xx" not in load:
            raise SystemExit(f"not every request got a 2xx:\n{load}")
    finally:
        stop(p, 60)
    for line in open(out):
        if line.startswith("summary:") or line.startswith("totals:"):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {out}")

# Stopped from outside (kill, Ctrl-C, even when started in the background
# with SIGINT ignored): leave through `finally`, which stops every process.
for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda *_: sys.exit(1))
backend = subprocess.Popen(["taskset", "-c", "0", *peers.backend_cmd()],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

try:
    wait_for(9001)
    wait_for(9002)
    results = {}
    for path in ("/small", "/4k"):
        for name, port, cmd in PROXIES:
            base = instructions(cmd, port, path, BASE)
            more = instructions(cmd, port, path, BASE + EXTRA)
            results[(name, path)] = (more - base) / EXTRA
            print(f"{path:7} {name:9} {results[(name, path)]:9.0f} instructions/request", flush=True)
    print()
    print(f"userspace instructions per request (callgrind; h2load --h1 -c50, {EXTRA} requests), proxy on CPU 1")
    print(f"{'response':9} {'proxy':9} {'instr/req':>10} {'vs HAProxy':>11}")
    for path in ("/small", "/4k"):
        for name, _, _ in PROXIES:
            n, ha = results[(name, path)], results[("haproxy", path)]
            print(f"{path:9} {name:9} {n:10.0f} {n / ha:10.2f}x")
finally:
    os.killpg(backend.pid, signal.SIGTERM)
    backend.wait(timeout=10)
