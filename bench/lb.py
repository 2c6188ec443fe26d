"""Load balancer benchmark (see bench/lb): req/s, p50, p99 and the proxy's
CPU time per request (user and system), for a small and a 4 KiB response, through webinfra,
HAProxy (roundrobin, 1 thread) and nginx (1 worker, upstream keepalive), with
the direct connection to one backend as the ceiling, and the 4 KiB response
over HTTPS (each proxy terminating TLS with the same certificate), and the
floor: a forwarder of bytes with no HTTP in it (bench/floor), what moving a
request and its response through any proxy costs here. Medians over rounds."""
import os, re, signal, statistics, subprocess, sys, tempfile, time, socket

ROUNDS, SECONDS = int(sys.argv[1]), int(sys.argv[2])
BIN = os.path.abspath("target/release/webinfra")
work = tempfile.mkdtemp(prefix="webinfra-lb-bench-")
os.chmod(work, 0o755)  # nginx workers run as an unprivileged user
HZ = os.sysconf("SC_CLK_TCK")
PROXY_CPU, LOAD_CPU = "1", "0"
BACKENDS = [9001, 9002]

def write(name, text):
    path = os.path.join(work, name)
    open(path, "w").write(text)
    return path

os.makedirs(os.path.join(work, "www"), mode=0o755)
open(os.path.join(work, "www", "small"), "w").write("hello world\n")
open(os.path.join(work, "www", "4k"), "w").write("x" * 4096)
nginx_backend = write("backend.conf", f"""
worker_processes 1; daemon off; pid {work}/backend.pid; error_log {work}/backend.err;
events {{ worker_connections 4096; }}
http {{
  access_log off; client_body_temp_path {work}/b1; proxy_temp_path {work}/b2; fastcgi_temp_path {work}/b3;
  uwsgi_temp_path {work}/b4; scgi_temp_path {work}/b5; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:9001 reuseport; root {work}/www; }}
  server {{ listen 127.0.0.1:9002 reuseport; root {work}/www; }}
}}""")
haproxy_cfg = write("haproxy.cfg", f"""
global
  nbthread 1
  maxconn 5000
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:8082
  bind 127.0.0.1:8442 ssl crt {work}/site.pem alpn http/1.1
  default_backend be
backend be
  balance roundrobin
  server a 127.0.0.1:9001
  server b 127.0.0.1:9002
""")
nginx_lb = write("nginx-lb.conf", f"""
worker_processes 1; daemon off; pid {work}/lb.pid; error_log {work}/lb.err;
events {{ worker_connections 4096; }}
http {{
  access_log off; client_body_temp_path {work}/l1; proxy_temp_path {work}/l2; fastcgi_temp_path {work}/l3;
  uwsgi_temp_path {work}/l4; scgi_temp_path {work}/l5; keepalive_requests 1000000;
  upstream be {{ server 127.0.0.1:9001; server 127.0.0.1:9002; keepalive 32; }}
  server {{ listen 127.0.0.1:8083; listen 127.0.0.1:8441 ssl; ssl_certificate {work}/state/lb-01/tls/certificate.pem;
    ssl_certificate_key {work}/state/lb-01/tls/key.pem;
    location / {{ proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}
}}""")
topology = write("lb.toml", """
[[host]]
name = "lb-01"
address = "127.0.0.1"
[load_balancer]
host = "lb-01"
port = 8081
admin_port = 8481
access_log = false  # like nginx's `access_log off` and HAProxy without `log`
[load_balancer.tls]
port = 8443  # self-signed certificate made at start; HAProxy and nginx get the same one
[[load_balancer.backend]]
name = "a"
address = "127.0.0.1:9001"
[[load_balancer.backend]]
name = "b"
address = "127.0.0.1:9002"
[load_balancer.health_check]
path = "/small"
""")

procs = []
def start(cmd, cpu):
    p = subprocess.Popen(["taskset", "-c", cpu, *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    procs.append(p)
    return p

def wait_port(port, deadline=20):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} never opened")

def cpu_ticks(pid):
    """utime and stime of `pid`, in clock ticks."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]), int(f[12])

def nginx_worker(master):
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]) == master:
                    return int(pid)
            except OSError:
                pass
    return master

def to_ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)", v)
    if m and m.group(2) == "m":
        return float(m.group(1)) * 60000
    n, u = float(m.group(1)), m.group(2)
    return n / 1000 if u == "us" else n * 1000 if u == "s" else n

def wrk(port, path, pid, scheme="http"):
    before = cpu_ticks(pid) if pid else (0, 0)
    out = subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c50", f"-d{SECONDS}s", "--latency",
                          f"{scheme}://127.0.0.1:{port}{path}"], capture_output=True, text=True).stdout
    after = cpu_ticks(pid) if pid else (0, 0)
    user, system = ((a - b) / HZ for a, b in zip(after, before))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    try:
        p50 = to_ms(re.search(r"^\s+50%[ \t]+(\S+)", out, re.M).group(1))
        p99 = to_ms(re.search(r"^\s+99%[ \t]+(\S+)", out, re.M).group(1))
    except AttributeError:
        print("cannot parse wrk's latency output:\n" + out, file=sys.stderr, flush=True)
        p50 = p99 = float("nan")
    return {"rps": rps, "p50": p50, "p99": p99, "cpu_us": (user + system) / total * 1e6,
            "user_us": user / total * 1e6, "sys_us": system / total * 1e6,
            "errors": int(errors.group(1)) if errors else 0}

try:
    start(["nginx", "-e", f"{work}/backend.err", "-c", nginx_backend, "-p", work], LOAD_CPU)
    for p in BACKENDS:
        wait_port(p)
    wi = start([BIN, "run", "load-balancer", "-t", topology, "-s", f"{work}/state"], PROXY_CPU)
    wait_port(8443)
    # The same certificate for every proxy (HAProxy wants certificate and key in one file).
    tls = f"{work}/state/lb-01/tls"
    write("site.pem", open(f"{tls}/certificate.pem").read() + open(f"{tls}/key.pem").read())
    ha = start(["haproxy", "-f", haproxy_cfg, "-db"], PROXY_CPU)
    ng = start(["nginx", "-e", f"{work}/lb.err", "-c", nginx_lb, "-p", work], PROXY_CPU)
    for p in (8081, 8082, 8083, 8441, 8442):
        wait_port(p)
    time.sleep(0.5)
    ng_worker = nginx_worker(ng.pid)
    # The floor: bytes forwarded with no HTTP (bench/floor), what any proxy pays the kernel.
    fl = start([os.path.abspath("bench/floor/target/release/floor"), "127.0.0.1:8090", "127.0.0.1:9001",
                "127.0.0.1:9002"], PROXY_CPU)
    wait_port(8090)
    targets = [("direct", 9001, None), ("webinfra", 8081, wi.pid), ("haproxy", 8082, ha.pid),
               ("nginx", 8083, ng_worker), ("floor", 8090, fl.pid)]
    # HTTPS: TLS terminated by each proxy (keep-alive, so mostly record crypto, few handshakes).
    tls_targets = [("webinfra", 8443, wi.pid), ("haproxy", 8442, ha.pid), ("nginx", 8441, ng_worker)]
    results = {}
    for r in range(ROUNDS):
        for path, scheme, group in (("/small", "http", targets), ("/4k", "http", targets),
                                    ("/4k", "https", tls_targets)):
            for name, port, pid in group:
                res = wrk(port, path, pid, scheme)
                path_key = path if scheme == "http" else f"{path} tls"
                results.setdefault((name, path_key), []).append(res)
                print(f"round {r + 1} {path_key:9} {name:9} {res['rps']:9.0f} req/s  p50 {res['p50']:.2f} ms  "
                      f"p99 {res['p99']:.2f} ms  cpu {res['cpu_us']:.1f} us/req (user {res['user_us']:.1f})  errors {res['errors']}", flush=True)
    def med(name, path, k):
        xs = [x[k] for x in results[(name, path)] if x[k] == x[k]]  # skip NaN (unparsed)
        return statistics.median(xs) if xs else float("nan")
    print()
    print(f"medians of {ROUNDS} rounds, wrk -t1 -c50 -d{SECONDS}s, proxies pinned to CPU {PROXY_CPU}, wrk and backends to CPU {LOAD_CPU}")
    print(f"{'response':9} {'path':9} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10} {'(user':>6} {'sys)':>5} {'req/s vs HAProxy':>17} {'CPU vs HAProxy':>15}")
    for path, group in (("/small", targets), ("/4k", targets), ("/4k tls", tls_targets)):
        for name, _, _ in group:
            rps, p50, p99, cpu, user, system = (med(name, path, k) for k in
                                                ("rps", "p50", "p99", "cpu_us", "user_us", "sys_us"))
            ha_rps, ha_cpu = med("haproxy", path, "rps"), med("haproxy", path, "cpu_us")
            ratio = f"{rps / ha_rps:.2f}x"
            cpu_ratio = f"{cpu / ha_cpu:.2f}x" if name != "direct" else "-"
            print(f"{path:9} {name:9} {rps:9.0f} {p50:7.2f} {p99:7.2f} {cpu:10.1f} {user:6.1f} {system:5.1f} "
                  f"{ratio:>17} {cpu_ratio:>15}")
finally:
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
