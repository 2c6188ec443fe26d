"""Load balancer benchmark (see bench/lb): req/s, p50, p99 and the proxy's
CPU time per request (user and system), for a small and a 4 KiB response, through webinfra,
HAProxy (roundrobin, 1 thread) and nginx (1 worker, upstream keepalive), with
the direct connection to one backend as the ceiling, and the 4 KiB response
over HTTPS (each proxy terminating TLS with the same certificate), and the
floor: a forwarder of bytes with no HTTP in it (bench/floor), what moving a
request and its response through any proxy costs here, and the same
forwarder on tokio (bench/floor-tokio, the `tokio` row), what the runtime
webinfra is built on adds to it.

This machine's speed drifts by 20-40% within minutes (a neighbour's load), so
each round measures the proxies back to back, in the opposite order every
other round, and a ratio against HAProxy is the median of the rounds' own
ratios (each from two runs seconds apart); absolute figures are medians over
rounds. The load core's busy time is printed too: near 100%, wrk and the
backends, not the proxy, set the pace."""
import os, re, signal, statistics, subprocess, sys, time, socket
from peers import BACKENDS, FLOOR, FLOOR_TOKIO, NGINX_BACKENDS, Peers

ROUNDS, SECONDS = int(sys.argv[1]), int(sys.argv[2])
peers = Peers("webinfra-lb-bench-", tls=True)
HZ = os.sysconf("SC_CLK_TCK")
PROXY_CPU, LOAD_CPU = "1", "0"

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

def load_core_ticks():
    """Busy and total ticks of the load core, from /proc/stat."""
    for line in open("/proc/stat"):
        f = line.split()
        if f[0] == f"cpu{LOAD_CPU}":
            t = [int(x) for x in f[1:9]]
            return sum(t) - t[3] - t[4], sum(t)
    return 0, 0

def cpu_ticks(pid):
    """utime and stime of `pid`, in clock ticks."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]), int(f[12])

def nginx_worker(master, deadline=20):
    """The worker nginx's master `master` started (polled for, up to `deadline` s)."""
    end = time.time() + deadline
    while time.time() < end:
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    if int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]) == master:
                        return int(pid)
                except OSError:
                    pass
        time.sleep(0.05)
    raise SystemExit(f"nginx {master} started no worker")

def to_ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)", v)
    if m and m.group(2) == "m":
        return float(m.group(1)) * 60000
    n, u = float(m.group(1)), m.group(2)
    return n / 1000 if u == "us" else n * 1000 if u == "s" else n

def wrk(port, path, pid, scheme="http"):
    before = cpu_ticks(pid) if pid else (0, 0)
    load_before = load_core_ticks()
    out = subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c50", f"-d{SECONDS}s", "--latency",
                          f"{scheme}://127.0.0.1:{port}{path}"], capture_output=True, text=True).stdout
    after = cpu_ticks(pid) if pid else (0, 0)
    load_after = load_core_ticks()
    load_busy, load_all = (a - b for a, b in zip(load_after, load_before))
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
            "errors": int(errors.group(1)) if errors else 0, "load": 100 * load_busy / max(load_all, 1)}


# Stopped from outside (kill, Ctrl-C, even when started in the background
# with SIGINT ignored): leave through `finally`, which stops every process.
for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda *_: sys.exit(1))
try:
    start(peers.backend_cmd(), LOAD_CPU)
    for p in BACKENDS:
        wait_port(p)
    wi = start(peers.webinfra_cmd(), PROXY_CPU)
    wait_port(8443)
    # The same with `pipelining = true`: the `webinfra-p` row.
    wp = start(peers.webinfra_pipelined_cmd(), PROXY_CPU)
    wait_port(8444)
    # The same certificate for every proxy.
    peers.write_site_pem()
    ha = start(peers.haproxy_cmd(), PROXY_CPU)
    ng = start(peers.nginx_cmd(), PROXY_CPU)
    for p in (8081, 8082, 8083, 8441, 8442):
        wait_port(p)
    ng_worker = nginx_worker(ng.pid)
    # The floor: bytes forwarded with no HTTP (bench/floor), what any proxy pays the kernel.
    fl = start(FLOOR, PROXY_CPU)
    wait_port(8090)
    # The same on tokio, as webinfra runs: what the runtime adds to the floor.
    ft = start(FLOOR_TOKIO, PROXY_CPU)
    wait_port(8091)
    targets = [("direct", 9001, None), ("webinfra", 8081, wi.pid), ("haproxy", 8082, ha.pid),
               ("webinfra-p", 8084, wp.pid),
               ("nginx", 8083, ng_worker), ("floor", 8090, fl.pid), ("tokio", 8091, ft.pid)]
    # HTTPS: TLS terminated by each proxy (keep-alive, so mostly record crypto, few handshakes).
    tls_targets = [("webinfra", 8443, wi.pid), ("haproxy", 8442, ha.pid), ("webinfra-p", 8444, wp.pid),
                   ("nginx", 8441, ng_worker)]
    results = {}
    for r in range(ROUNDS):
        for path, scheme, group in (("/small", "http", targets), ("/4k", "http", targets),
                                    ("/4k", "https", tls_targets)):
            # Every other round in the opposite order: no proxy always runs
            # right after another, and webinfra and HAProxy stay neighbours.
            for name, port, pid in (group if r % 2 == 0 else group[::-1]):
                res = wrk(port, path, pid, scheme)
                path_key = path if scheme == "http" else f"{path} tls"
                results.setdefault((name, path_key), []).append(res)
                print(f"round {r + 1} {path_key:9} {name:10} {res['rps']:9.0f} req/s  p50 {res['p50']:.2f} ms  "
                      f"p99 {res['p99']:.2f} ms  cpu {res['cpu_us']:.1f} us/req (user {res['user_us']:.1f})  "
                      f"load core {res['load']:.0f}%  errors {res['errors']}", flush=True)
    median = lambda xs: statistics.median(xs) if xs else float("nan")
    def med(name, path, k):
        return median([x[k] for x in results[(name, path)] if x[k] == x[k]])  # skip NaN (unparsed)
    def ratios(name, path, k):
        """`name`'s k over HAProxy's, round by round."""
        pairs = zip(results[(name, path)], results[("haproxy", path)])
        return [a[k] / b[k] for a, b in pairs if a[k] == a[k] and b[k] == b[k] and b[k] > 0]
    def ratio(name, path, k):
        return median(ratios(name, path, k))
    print()
    backends = "one nginx worker" if NGINX_BACKENDS else "bench/backend"
    print(f"medians of {ROUNDS} rounds, wrk -t1 -c50 -d{SECONDS}s, proxies pinned to CPU {PROXY_CPU}, "
          f"wrk and the backends ({backends}) to CPU {LOAD_CPU}")
    print("ratios: the median of the rounds' own ratios; load %: the load core's busy time")
    print(f"{'response':9} {'path':10} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10} {'(user':>6} {'sys)':>5} {'load %':>6} {'req/s vs HAProxy':>17} {'CPU vs HAProxy':>15} {'p99 vs HAProxy':>15}")
    for path, group in (("/small", targets), ("/4k", targets), ("/4k tls", tls_targets)):
        for name, _, _ in group:
            rps, p50, p99, cpu, user, system, load = (med(name, path, k) for k in
                                                      ("rps", "p50", "p99", "cpu_us", "user_us", "sys_us", "load"))
            rps_ratio = f"{ratio(name, path, 'rps'):.2f}x"
            cpu_ratio = f"{ratio(name, path, 'cpu_us'):.2f}x" if name != "direct" else "-"
            # The goal's third part: a p99 no worse than HAProxy's.
            p99_ratio = f"{ratio(name, path, 'p99'):.2f}x"
            print(f"{path:9} {name:10} {rps:9.0f} {p50:7.2f} {p99:7.2f} {cpu:10.1f} {user:6.1f} {system:5.1f} {load:6.0f} "
                  f"{rps_ratio:>17} {cpu_ratio:>15} {p99_ratio:>15}")
    print()
    for name in ("webinfra", "webinfra-p"):
        print(f"{name} against HAProxy, round by round (lowest - highest):")
        for path in ("/small", "/4k", "/4k tls"):
            spread = lambda k: "-".join(f"{f(ratios(name, path, k)):.2f}x" for f in (min, max))
            print(f"  {path:8} req/s {spread('rps')}, CPU {spread('cpu_us')}, p99 {spread('p99')}")
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
