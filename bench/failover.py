"""Failover benchmark (see bench/failover). Prints the failover-time
distribution (kill -> first acknowledged write sent after the kill), the
acknowledged writes lost, and replication lag p50/p99 under load."""
import http.client, json, os, signal, statistics, subprocess, sys, tempfile, threading, time
import pymysql

BIN = os.path.abspath("target/release/webinfra")
KILLS = int(sys.argv[1])
BLOCK = "127.78.1"
work = tempfile.mkdtemp(prefix="webinfra-bench-")
topo = os.path.join(work, "topology.toml")
state = os.path.join(work, "state")
src = open("topologies/foobar.toml").read()
for old, new in [("127.0.0.1\"", f"{BLOCK}.1\""), ("127.0.0.11", f"{BLOCK}.11"), ("127.0.0.12", f"{BLOCK}.12"),
                 ("127.0.0.21", f"{BLOCK}.21"), ("127.0.0.22", f"{BLOCK}.22")]:
    src = src.replace(old, new)
open(topo, "w").write(src)
SITE = (f"{BLOCK}.1", 8080)
MONITOR = (f"{BLOCK}.1", 9105)
env = dict(os.environ, WEBINFRA_TOPOLOGY=topo, WEBINFRA_STATE_DIR=state)

def wi(*args):
    return subprocess.run([BIN, *args], env=env, capture_output=True, text=True)

def cluster():
    c = http.client.HTTPConnection(*MONITOR, timeout=5)
    c.request("GET", "/cluster")
    return json.loads(c.getresponse().read())

def wait(what, pred, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        try:
            v = pred()
            if v:
                return v
        except Exception:
            pass
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")

out = wi("up", "--detach")
if out.returncode != 0:
    raise SystemExit(out.stdout + out.stderr)
try:
    log, lock, stop = [], threading.Lock(), threading.Event()

    def writer(t):
        i = 0
        while not stop.is_set() and i < 200000:
            i += 1
            text = f"bench-{t}-{i}"
            sent = time.time()
            try:
                c = http.client.HTTPConnection(*SITE, timeout=10)
                c.request("POST", "/api/messages", json.dumps({"author": "bench", "text": text}),
                          {"Content-Type": "application/json"})
                status = c.getresponse().status
            except Exception:
                status = 0
            with lock:
                log.append((text, sent, time.time(), status))

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    times = []
    for k in range(KILLS):
        time.sleep(1.0)
        old = cluster()["primary"]
        pid = int(open(os.path.join(state, old, "mariadb/run/mariadb.pid")).read())
        killed = time.time()
        os.kill(pid, signal.SIGKILL)
        def recovered():
            with lock:
                acks = [a for (_, s, a, st) in log if st == 201 and s > killed]
            return min(acks) if acks else None
        t = wait("a write after the kill", recovered, 30) - killed
        times.append(t)
        wait("a new primary", lambda: cluster()["primary"] not in (None, old))
        wi("start", old)
        wait(f"{old} to rejoin", lambda: any(n["name"] == old and n["role"] == "replica" for n in cluster()["nodes"]))
        print(f"kill {k + 1:2}: {old} -> {cluster()['primary']}  first write after {t * 1000:7.1f} ms", flush=True)
    stop.set()
    for t in threads:
        t.join()

    creds = json.load(open(os.path.join(state, "credentials.json")))
    c = cluster()
    addr = {n["name"]: n["address"].split(":") for n in c["nodes"]}
    def connect(node):
        host, port = addr[node]
        return pymysql.connect(host=host, port=int(port), user="webinfra_app", password=creds["app_password"],
                               database="foobar", autocommit=True)
    primary = c["primary"]
    replica = [n for n in addr if n != primary][0]
    db = connect(primary)
    cur = db.cursor()
    cur.execute("SELECT text FROM messages")
    stored = {r[0] for r in cur.fetchall()}
    acked = [l for l in log if l[3] == 201]
    lost = [l[0] for l in acked if l[0] not in stored]
    failed = sum(1 for l in log if l[3] != 201)
    sent = len(log)

    # Replication lag under load: commit on the primary, poll the replica.
    stop.clear()
    threads = [threading.Thread(target=writer, args=(100 + t,)) for t in range(2)]
    for t in threads:
        t.start()
    rep = connect(replica).cursor()
    lags = []
    for i in range(500):
        cur.execute("INSERT INTO messages (author, text) VALUES ('lag', %s)", (f"lag-{i}",))
        committed = time.perf_counter()
        rid = cur.lastrowid
        while True:
            rep.execute("SELECT 1 FROM messages WHERE id = %s", (rid,))
            if rep.fetchone():
                break
        lags.append((time.perf_counter() - committed) * 1000)
    stop.set()
    for t in threads:
        t.join()

    times_ms = sorted(t * 1000 for t in times)
    q = lambda xs, p: xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]
    lags.sort()
    print()
    print(f"failover (kill -9 of the primary's mariadbd -> first acknowledged write sent after it), {len(times_ms)} kills:")
    print(f"  min {times_ms[0]:.0f} ms   median {statistics.median(times_ms):.0f} ms   p95 {q(times_ms, 0.95):.0f} ms   max {times_ms[-1]:.0f} ms")
    print(f"writes: {sent} sent, {len(acked)} acknowledged, {failed} refused (503/errors), {len(lost)} acknowledged and lost")
    print(f"replication lag under load (commit on the primary -> visible on the replica), {len(lags)} samples:")
    print(f"  p50 {q(lags, 0.5):.2f} ms   p99 {q(lags, 0.99):.2f} ms   max {lags[-1]:.2f} ms")
    if lost:
        sys.exit(1)
finally:
    wi("down")
