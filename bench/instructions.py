"""Userspace instructions per request (see bench/instructions): each proxy
runs under callgrind on one CPU and serves a fixed number of keep-alive
requests from h2load (HTTP/1.1, 50 connections); it runs twice, with a few
requests and with REQUESTS more, so start-up and shut-down cancel out."""
import os, signal, socket, subprocess, sys, tempfile, time

EXTRA = int(sys.argv[1])
BASE = 1000
ROOT = os.getcwd()
work = tempfile.mkdtemp(prefix="webinfra-instr-bench-")
os.chmod(work, 0o755)  # nginx workers run as an unprivileged user
os.makedirs(f"{work}/www", mode=0o755)
open(f"{work}/www/small", "w").write("hello world\n")
open(f"{work}/www/4k", "w").write("x" * 4096)
TEMP = "client_body_temp_path {w}/t1; proxy_temp_path {w}/t2; fastcgi_temp_path {w}/t3; uwsgi_temp_path {w}/t4; scgi_temp_path {w}/t5;"

def write(name, text):
    path = f"{work}/{name}"
    open(path, "w").write(text)
    return path

backends = write("backend.conf", f"""
worker_processes 1; daemon off; pid {work}/backend.pid; error_log {work}/backend.err;
events {{ worker_connections 4096; }}
http {{ access_log off; {TEMP.format(w=work)} keepalive_requests 1000000;
  server {{ listen 127.0.0.1:9001; root {work}/www; }}
  server {{ listen 127.0.0.1:9002; root {work}/www; }} }}""")
haproxy = write("haproxy.cfg", """
global
  nbthread 1
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:8082
  default_backend be
backend be
  balance roundrobin
  option httpchk GET /small
  server a 127.0.0.1:9001 check
  server b 127.0.0.1:9002 check
""")
# One process (no master), so callgrind follows the process that serves.
nginx = write("nginx-lb.conf", f"""
master_process off; daemon off; pid {work}/lb.pid; error_log {work}/lb.err;
events {{ worker_connections 4096; }}
http {{ access_log off; {TEMP.format(w=work)} keepalive_requests 1000000;
  upstream be {{ server 127.0.0.1:9001; server 127.0.0.1:9002; keepalive 32; }}
  server {{ listen 127.0.0.1:8083; location / {{ proxy_pass http://be; proxy_http_version 1.1;
    proxy_set_header Connection ""; }} }} }}""")
topology = write("lb.toml", """
[[host]]
name = "lb-01"
address = "127.0.0.1"
[load_balancer]
host = "lb-01"
port = 8081
admin_port = 8481
access_log = false
[[load_balancer.backend]]
name = "a"
address = "127.0.0.1:9001"
[[load_balancer.backend]]
name = "b"
address = "127.0.0.1:9002"
[load_balancer.health_check]
path = "/small"
""")
PROXIES = [
    ("webinfra", 8081, [f"{ROOT}/target/release/webinfra", "run", "load-balancer", "-t", topology, "-s", f"{work}/state"]),
    ("haproxy", 8082, ["haproxy", "-f", haproxy, "-db"]),
    ("nginx", 8083, ["nginx", "-e", f"{work}/lb.err", "-c", nginx, "-p", work]),
    ("floor", 8090, [f"{ROOT}/bench/floor/target/release/floor", "127.0.0.1:8090", "127.0.0.1:9001", "127.0.0.1:9002"]),
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
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    for line in open(out):
        if line.startswith("summary:") or line.startswith("totals:"):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {out}")

backend = subprocess.Popen(["taskset", "-c", "0", "nginx", "-e", f"{work}/backend.err", "-c", backends, "-p", work],
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
