"""What the two load balancer benchmarks share (bench/lb, bench/instructions):
a work directory with the two responses (/small, /4k), two backends on
127.0.0.1:9001 and :9002, and the same round-robin load balancing over them
by each proxy: webinfra on 8081 (HTTPS 8443), webinfra with pipelining to
the servers on 8084 (8444), HAProxy on 8082 (8442), nginx
on 8083 (8441), the floor, bench/floor, on 8090 and the floor on tokio,
bench/floor-tokio, on 8091.

The backends are bench/backend (one process, both addresses), the cheapest
backend we could make, so the load side (wrk and the backends, sharing one
core) leaves the proxies as much room as it can. BENCH_BACKEND=nginx serves
the same files from one nginx worker instead (with `open_file_cache`, as a
tuned nginx would), the benchmark's backends before 2026-12-02."""
import os, signal, subprocess, tempfile

BACKENDS = [9001, 9002]
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
WEBINFRA = f"{ROOT}/target/release/webinfra"
FLOOR = [f"{ROOT}/bench/floor/target/release/floor", "127.0.0.1:8090", "127.0.0.1:9001", "127.0.0.1:9002"]
# The same on tokio, as webinfra runs (bench/floor-tokio): the `tokio` row.
FLOOR_TOKIO = [f"{ROOT}/bench/floor-tokio/target/release/floor-tokio", "127.0.0.1:8091", "127.0.0.1:9001", "127.0.0.1:9002"]
BACKEND = [f"{ROOT}/bench/backend/target/release/backend", "127.0.0.1:9001", "127.0.0.1:9002"]
NGINX_BACKENDS = os.environ.get("BENCH_BACKEND", "") == "nginx"



def stop(p, timeout):
    """Stops `p`, started in its own session, and what it started: SIGTERM
    to its process group, SIGKILL if it is not gone within `timeout` s."""
    os.killpg(p.pid, signal.SIGTERM)
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


class Peers:
    """Config files in a new work directory. `tls`: HTTPS listeners too
    (HAProxy's needs `site.pem`, see `write_site_pem`, before it starts);
    `one_process`: nginx without a master process (so a tool that follows
    one process, like callgrind, follows the one that serves)."""

    def __init__(self, prefix, tls, one_process=False):
        self.work = tempfile.mkdtemp(prefix=prefix)
        os.chmod(self.work, 0o755)  # nginx workers run as an unprivileged user
        w = self.work
        os.makedirs(f"{w}/www", mode=0o755)
        open(f"{w}/www/small", "w").write("hello world\n")
        open(f"{w}/www/4k", "w").write("x" * 4096)
        temp = lambda p: "; ".join(f"{k}_temp_path {w}/{p}{i}" for i, k in
                                   enumerate(("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))) + ";"
        self.backend_conf = self.write("backend.conf", f"""
worker_processes 1; daemon off; pid {w}/backend.pid; error_log {w}/backend.err;
events {{ worker_connections 4096; }}
http {{ access_log off; {temp("b")} keepalive_requests 1000000;
  open_file_cache max=16; open_file_cache_valid 1h;
  server {{ listen 127.0.0.1:9001 reuseport; root {w}/www; }}
  server {{ listen 127.0.0.1:9002 reuseport; root {w}/www; }} }}""")
        tls_bind = f"\n  bind 127.0.0.1:8442 ssl crt {w}/site.pem alpn http/1.1" if tls else ""
        # Health checks like webinfra's own, so both do the same work.
        self.haproxy_cfg = self.write("haproxy.cfg", f"""
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
  bind 127.0.0.1:8082{tls_bind}
  default_backend be
backend be
  balance roundrobin
  option httpchk GET /small
  server a 127.0.0.1:9001 check
  server b 127.0.0.1:9002 check
""")
        processes = "master_process off;" if one_process else "worker_processes 1;"
        tls_listen = (f" listen 127.0.0.1:8441 ssl; ssl_certificate {w}/state/lb-01/tls/certificate.pem;"
                      f" ssl_certificate_key {w}/state/lb-01/tls/key.pem;") if tls else ""
        self.nginx_lb = self.write("nginx-lb.conf", f"""
{processes} daemon off; pid {w}/lb.pid; error_log {w}/lb.err;
events {{ worker_connections 4096; }}
http {{ access_log off; {temp("l")} keepalive_requests 1000000;
  upstream be {{ server 127.0.0.1:9001; server 127.0.0.1:9002; keepalive 32; }}
  server {{ listen 127.0.0.1:8083;{tls_listen}
    location / {{ proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}""")
        self.topology = self.write("lb.toml", self.lb_topology(tls, 8081, 8443, 8481, ""))
        # The same with pipelining to the servers (`webinfra-p`).
        self.topology_pipelined = self.write(
            "lb-pipelined.toml",
            self.lb_topology(tls, 8084, 8444, 8484, "pipelining = true  # see the README's Pipelining\n"))

    @staticmethod
    def lb_topology(tls, port, tls_port, admin_port, more):
        tls_section = ("[load_balancer.tls]\n"
                       f"port = {tls_port}  # self-signed certificate made at start; HAProxy and nginx get the same one\n"
                       if tls else "")
        return f"""
[[host]]
name = "lb-01"
address = "127.0.0.1"
[load_balancer]
host = "lb-01"
port = {port}
admin_port = {admin_port}
access_log = false  # like nginx's `access_log off` and HAProxy without `log`
{more}{tls_section}[[load_balancer.backend]]
name = "a"
address = "127.0.0.1:9001"
[[load_balancer.backend]]
name = "b"
address = "127.0.0.1:9002"
[load_balancer.health_check]
path = "/small"
"""

    def write(self, name, text):
        path = f"{self.work}/{name}"
        open(path, "w").write(text)
        return path

    def backend_cmd(self):
        """The two backends, one process."""
        if not NGINX_BACKENDS:
            return BACKEND
        return ["nginx", "-e", f"{self.work}/backend.err", "-c", self.backend_conf, "-p", self.work]

    def webinfra_cmd(self):
        return [WEBINFRA, "run", "load-balancer", "-t", self.topology, "-s", f"{self.work}/state"]

    def webinfra_pipelined_cmd(self):
        """webinfra with `pipelining = true`, on 8084 (HTTPS 8444)."""
        return [WEBINFRA, "run", "load-balancer", "-t", self.topology_pipelined, "-s", f"{self.work}/state-p"]

    def haproxy_cmd(self):
        return ["haproxy", "-f", self.haproxy_cfg, "-db"]

    def nginx_cmd(self):
        return ["nginx", "-e", f"{self.work}/lb.err", "-c", self.nginx_lb, "-p", self.work]

    def write_site_pem(self):
        """The certificate webinfra made, for HAProxy (certificate and key in one file)."""
        tls = f"{self.work}/state/lb-01/tls"
        self.write("site.pem", open(f"{tls}/certificate.pem").read() + open(f"{tls}/key.pem").read())
