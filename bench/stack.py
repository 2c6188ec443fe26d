"""bench/stack: the whole stack, webinfra's front tiers against the classic
ones, over the same application servers and MariaDB nodes, in one run.

webinfra: `webinfra up` of a foobar.com topology on 127.79.1.0/24 (site on
127.79.1.1:18080). classic: HAProxy 2.6 on 127.79.1.1:28080, round robin
(`http-reuse always`) to an nginx 1.22 on each server host (:28000) that
serves the static files the web server serves and proxies the rest to its
host's application server (the other host's as a backup, upstream
keepalive), as the design's usual deployment does. Both with their default
thread and worker counts (this machine's cores). wrk -t2 -c50 per row,
the two stacks back to back, in the opposite order every other round; CPU
per request by tier is utime+stime of each tier's processes from
/proc/PID/stat over the run (all threads, nginx's workers included)."""
import json, os, re, signal, subprocess, sys, tempfile, time, urllib.request

ROUNDS, SECONDS = int(sys.argv[1]), int(sys.argv[2])
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
WEBINFRA = f"{ROOT}/target/release/webinfra"
HZ = os.sysconf("SC_CLK_TCK")
IP = lambda last: f"127.79.1.{last}"
SITE, CLASSIC = f"http://{IP(1)}:18080", f"http://{IP(1)}:28080"

work = tempfile.mkdtemp(prefix="webinfra-stack-bench-")
os.chmod(work, 0o755)
state = f"{work}/state"
topology = f"{work}/topology.toml"
hosts = {"lb-01": 1, "server-01": 11, "server-02": 12, "db-01": 21, "db-02": 22}
open(topology, "w").write("".join(f'[[host]]\nname = "{h}"\naddress = "{IP(n)}"\n\n' for h, n in hosts.items()) + """
[load_balancer]
host = "lb-01"
port = 18080
admin_port = 18404
servers = ["server-01", "server-02"]
access_log = false

[web]
hosts = ["server-01", "server-02"]
port = 18000

[app]
hosts = ["server-01", "server-02"]
port = 19000

[database]
primary = "db-01"
replicas = ["db-02"]
port = 13306
admin_port = 19104
monitor_port = 19105
""")

procs = []


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def webinfra(*args):
    return run([WEBINFRA, *args, "-t", topology, "-s", state])


def children(pid):
    """Every descendant of `pid` (nginx's workers, mariadbd under its supervisor)."""
    out, todo = [], [pid]
    parents = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                parents.setdefault(int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1]), []).append(int(p))
            except OSError:
                pass
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def ticks(pids):
    total = 0
    for pid in pids:
        try:
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except OSError:
            pass
    return total


def wait_http(url, deadline=30):
    end = time.time() + deadline
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} never answered")


def classic_front(static_dirs):
    """HAProxy and two nginx in front of the same application servers."""
    temp = lambda p: "; ".join(f"{k}_temp_path {work}/{p}{i}" for i, k in
                               enumerate(("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))) + ";"
    servers = ""
    for n, (host, last) in enumerate((("server-01", 11), ("server-02", 12))):
        other = 12 if last == 11 else 11
        servers += f"""
  upstream app{n} {{ server {IP(last)}:19000; server {IP(other)}:19000 backup; keepalive 32; }}
  server {{ listen {IP(last)}:28000;
    location /static/ {{ alias {static_dirs[host]}/; open_file_cache max=64; }}
    location / {{ proxy_pass http://app{n}; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host $host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; }} }}"""
    open(f"{work}/nginx.conf", "w").write(f"""
worker_processes auto; daemon off; pid {work}/nginx.pid; error_log {work}/nginx.err;
events {{ worker_connections 4096; }}
http {{ access_log off; {temp("n")} include /etc/nginx/mime.types; keepalive_requests 1000000; {servers} }}""")
    open(f"{work}/haproxy.cfg", "w").write(f"""
global
  maxconn 4000
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend site
  bind {IP(1)}:28080
  default_backend web
backend web
  balance roundrobin
  server server-01 {IP(11)}:28000
  server server-02 {IP(12)}:28000
""")
    ng = subprocess.Popen(["nginx", "-c", f"{work}/nginx.conf", "-e", f"{work}/nginx.err", "-p", work],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ha = subprocess.Popen(["haproxy", "-db", "-f", f"{work}/haproxy.cfg"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    procs.extend([ng, ha])
    return ha, ng


def wrk(base, path, tiers, post=False):
    """One wrk run; req/s, p99 and CPU us per request of each tier's processes."""
    before = {t: ticks(p) for t, p in tiers.items()}
    cmd = ["wrk", "-t2", "-c50", f"-d{SECONDS}s", "--latency"]
    if post:
        cmd += ["-s", f"{work}/post.lua"]
    out = run(cmd + [base + path]).stdout
    after = {t: ticks(p) for t, p in tiers.items()}
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: .*", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)", out, re.M)
    p99_ms = float(p99.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)] if p99 else float("nan")
    return {"rps": total / SECONDS, "p99": p99_ms, "bad": int(bad.group(1)) if bad else 0,
            "errors": errors.group(0) if errors else "",
            "cpu": {t: (after[t] - before[t]) / HZ / max(total, 1) * 1e6 for t in tiers}}


for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda *_: sys.exit(1))
try:
    up = webinfra("up", "--detach")
    if up.returncode != 0:
        raise SystemExit("webinfra up failed:\n" + up.stdout + up.stderr)
    comps = json.loads(webinfra("status", "--json").stdout)["components"]
    pid = lambda role: [c["pid"] for c in comps if c["role"] == role]
    db_pids = [p for d in pid("database") for p in [d, *children(d)]]
    app_pids = pid("app")
    statics = {h: f"{state}/{h}/static" for h in ("server-01", "server-02")}
    ha, ng = classic_front(statics)
    wait_http(f"{CLASSIC}/static/style.css")
    open(f"{work}/post.lua", "w").write('wrk.method = "POST"\nwrk.body = \'{"author":"bench","text":"a message from wrk"}\'\n'
                                        'wrk.headers["Content-Type"] = "application/json"\n')
    for i in range(20):
        req = urllib.request.Request(f"{SITE}/api/messages", method="POST", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"author": "bench", "text": f"message {i}"}).encode())
        one = json.loads(urllib.request.urlopen(req).read())["id"]
    stacks = {
        "webinfra": (SITE, {"lb": pid("load-balancer"), "web": pid("web"), "app": app_pids, "db": db_pids}),
        "classic": (CLASSIC, {"lb": [ha.pid], "web": [ng.pid, *children(ng.pid)], "app": app_pids, "db": db_pids}),
    }
    rows = [("GET /", "/", False), ("GET /api/messages", "/api/messages", False),
            ("GET /api/messages/ID", f"/api/messages/{one}", False), ("GET /static/style.css", "/static/style.css", False),
            ("POST /api/messages", "/api/messages", True)]
    results = {}
    for r in range(ROUNDS):
        for row, path, post in rows:
            order = list(stacks) if r % 2 == 0 else list(stacks)[::-1]
            for name in order:
                base, tiers = stacks[name]
                results.setdefault((row, name), []).append(wrk(base, path, tiers, post))
    med = lambda xs: sorted(xs)[len(xs) // 2]
    print(f"\nbench/stack {ROUNDS} {SECONDS}: wrk -t2 -c50 -d{SECONDS}s, medians of {ROUNDS} rounds, CPU us per request by tier")
    print(f"{'row':<24}{'stack':<10}{'req/s':>9}{'p99 ms':>8}{'lb':>7}{'web':>7}{'app':>7}{'db':>7}{'non-2xx':>9}{'  vs classic':>13}")
    for row, _, _ in rows:
        for name in stacks:
            rs = results[(row, name)]
            rps = med([x["rps"] for x in rs])
            classic = med([x["rps"] for x in results[(row, "classic")]])
            cpu = {t: med([x["cpu"][t] for x in rs]) for t in ("lb", "web", "app", "db")}
            print(f"{row:<24}{name:<10}{rps:>9.0f}{med([x['p99'] for x in rs]):>8.2f}"
                  + "".join(f"{cpu[t]:>7.1f}" for t in ("lb", "web", "app", "db"))
                  + f"{sum(x['bad'] for x in rs):>9}{rps / classic:>12.2f}x")
            for x in rs:
                if x["errors"]:
                    print(f"    {name}: {x['errors']}")
finally:
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            os.killpg(p.pid, signal.SIGKILL)
    webinfra("down")
