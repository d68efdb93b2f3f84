"""A stand-in for K3s, used by Foundry's lab and tests only: no K3s binary can be had on
the machines Foundry is developed on. Foundry uploads this file to /usr/local/bin/k3s as
it would upload the real binary to an air-gapped host, and runs the install.sh stand-in.

What it keeps of K3s's contract:
- Versions as K3s's: `k3s --version` says K3S_VERSION, and so does the Node's
  kubeletVersion, set by the running process when it registers (again on each start):
  the binary replaced and the unit restarted, the node reports the new version, as a
  manual upgrade of K3s does. The lab writes one copy per release (v1.31, v1.32, v1.33).
- `k3s --version`, `k3s server`, `k3s agent`; flags from the command line, from
  /etc/rancher/k3s/config.yaml (keys as the flags' names; the command line wins) and
  from K3S_URL, K3S_TOKEN, K3S_TOKEN_FILE, K3S_NODE_NAME, K3S_CLUSTER_INIT.
- A server with `cluster-init` makes the cluster's CAs and its serving certificate, the
  tokens (/var/lib/rancher/k3s/server/token in K3s's `K10<CA hash>::server:<secret>`
  form, `node-token`, `agent-token`), starts a new etcd member, writes the kubeconfig
  /etc/rancher/k3s/k3s.yaml (0600, https://127.0.0.1:6443), serves HTTPS on :6443, then
  tells systemd READY=1 (the unit is Type=notify).
- A server with `server: https://X:6443` and a token checks X's CA against the token's
  hash (/cacerts), fetches the bootstrap data from /v1-k3s/server-bootstrap (the token
  authenticates it), adds itself as an etcd learner, starts etcd with
  initial-cluster-state=existing, promotes itself once etcd says it has caught up, and
  only then is READY. A wrong token exits non-zero (the unit restarts it, as K3s's
  does); an unreachable server or a second learner makes the join wait, for ever.
- An agent checks the token with its server (/cacerts, then a supervisor path), then is
  READY.
- Progress goes to stdout (the unit's journal) in K3s's log format.
- A server that has a token file refuses another token, as K3s's bootstrap data is
  keyed by the token.
- etcd as K3s embeds it: clients on https://127.0.0.1:2379 and the node's address, peers
  on :2380, both over TLS with client certificates required (--client-cert-auth), the
  CAs and certificates at K3s's paths under /var/lib/rancher/k3s/server/tls/etcd/
  (server-ca, peer-ca, server-client, peer-server-client, client: .crt and .key), the two
  CAs carried to joining servers in the bootstrap data; members named as K3s names them,
  `<node>-<8 hex digits>` (kept in db/etcd/name); a joining server stays a learner a few
  seconds (K3s's leader promotes learners on a tick).
- With the API stand-in: servers and agents register their Node (Ready, roles as
  labels, the kubelet version this stand-in's), and a server Node deleted from the API
  has its etcd member removed, as K3s's etcd controller does (again on the next poll
  when etcd refuses it for a moment).
- With the API stand-in, K3s's deploy controller: every manifest in
  /var/lib/rancher/k3s/server/manifests/ applied (server-side, forced, manager
  `deploy@NODE`), again when the file changes; kinds the API stand-in does not serve
  (ServiceAccount, RBAC) are skipped with a log line. No Addon objects, no deletion of
  what a removed file held.
- With the API stand-in, kube-vip's contract for the control plane in ARP mode, run by
  each server while kube-system has a DaemonSet with a `kube-vip` image: its env
  (`address` or `vip_address`, `vip_interface`, `cp_enable`, `cp_namespace`,
  `vip_leasename` default plndr-cp-lock, `vip_leaseduration`/`vip_renewdeadline`/
  `vip_retryperiod` default 5/3/1, `vip_arp`), leader election on that Lease as
  client-go's (holderIdentity the node's name; taken over once not renewed for its
  duration), the holder adding VIP/32 to the interface (gratuitous ARP when `arping` is
  there), a server that loses the lease, stops, or loses the DaemonSet removing it. Not
  kept: the DaemonSet's pods (none run), services load-balancing (`svc_enable`), BGP,
  the lease released on a clean stop (the next holder waits for its duration).
- /etc/rancher/k3s/registries.yaml read when the process starts, as K3s's containerd
  config is made then: with it, kube-vip's image is pulled before its pod runs, its
  manifest fetched through the distribution API from the first `mirrors` endpoint that
  has it (`rewrite` applied, Go's `$1` as Python's), as containerd does; when none has
  it the pod does not run (no lease, no VIP) and the pull is tried again. A registry
  without a mirror is pulled from upstream as without the file (nothing is fetched:
  this stand-in has no internet). Without the file, as before: no image is pulled.

What is real: systemd runs it, and the servers' etcd is Debian's etcd 3.4, so
membership, learners and quorum follow etcd's own rules. What is not: no kubelet, no
containerd, no pod runs; a server without `cluster-init` or `server` runs etcd too
(K3s would use SQLite);
`k3s kubectl`, `k3s etcd-snapshot` and the rest are not there. The Kubernetes API on
:6443 is the API stand-in (kube_api.py) when this file carries it.

Every name here starts with k3s_, K3s or K3S_: the file is concatenated after the API
stand-in's into one executable, and must not shadow its names.
"""

import base64
import copy
import datetime
import hashlib
import hmac
import http.server
import ipaddress
import json
import os
import secrets as _secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import re
import time
import urllib.error
import urllib.request

# The version this stand-in says it is: the lab writes the file once per release it
# stands in for (k3s-<release>, this line changed), so a node runs the version of the
# binary it was started from.
K3S_VERSION = "v1.32.4+k3s1"
# How long a join takes at least, in seconds, as a real one does.
K3S_JOIN_SECONDS = 3.0
# How long a joining server stays a learner at least: K3s's leader promotes learners on
# a 15 s tick; this is shorter, and long enough to be seen.
K3S_LEARNER_SECONDS = 3.0
# How long between two tries of a join step that waits (a server unreachable, etcd busy).
K3S_RETRY_SECONDS = 2.0

K3S_CONFIG = "/etc/rancher/k3s/config.yaml"
K3S_REGISTRIES = "/etc/rancher/k3s/registries.yaml"
# What a pull accepts, as containerd asks for it.
K3S_MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])
K3S_KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"
K3S_DATA = "/var/lib/rancher/k3s"
K3S_SERVER = K3S_DATA + "/server"
K3S_TLS = K3S_SERVER + "/tls"
K3S_ETCD_DIR = K3S_SERVER + "/db/etcd"
K3S_API_PORT = 6443
K3S_ETCD_CLIENT = 2379
K3S_ETCD_PEER = 2380
# etcd's own CAs and certificates, at K3s's paths: clients and peers speak TLS and must
# show a certificate (--client-cert-auth), as K3s's embedded etcd's do.
K3S_ETCD_TLS = K3S_TLS + "/etcd"
K3S_ETCD_CA = K3S_ETCD_TLS + "/server-ca.crt"
K3S_ETCD_CLIENT_CERT = K3S_ETCD_TLS + "/client.crt"
K3S_ETCD_CLIENT_KEY = K3S_ETCD_TLS + "/client.key"
K3S_ETCD_LOCAL = "https://127.0.0.1:%d" % K3S_ETCD_CLIENT
# The CAs the bootstrap data carries to a joining server, as K3s's does.
K3S_SHARED_CAS = ("server-ca", "client-ca", "etcd/server-ca", "etcd/peer-ca")

# Flags that take no value; the ones that may be given more than once.
K3S_BOOLEAN_FLAGS = {
    "cluster-init", "cluster-reset", "disable-etcd", "disable-apiserver", "debug",
    "disable-network-policy", "disable-helm-controller", "disable-kube-proxy",
    "secrets-encryption", "protect-kernel-defaults", "selinux", "rootless",
    "write-kubeconfig-group", "embedded-registry", "disable-cloud-controller",
}
K3S_LIST_FLAGS = {"tls-san", "node-label", "node-taint", "disable", "kubelet-arg",
              "kube-apiserver-arg", "etcd-arg", "node-external-ip"}
K3S_ENV_FLAGS = {"K3S_URL": "server", "K3S_TOKEN": "token", "K3S_TOKEN_FILE": "token-file",
             "K3S_NODE_NAME": "node-name", "K3S_AGENT_TOKEN": "agent-token",
             "K3S_CLUSTER_INIT": "cluster-init"}


class K3sRefused(Exception):
    """A join its server refused (a wrong token): the process exits, the unit retries."""


def k3s_log(msg, level="info"):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    sys.stdout.write('time="%s" level=%s msg="%s"\n' % (stamp, level, msg.replace('"', "'")))
    sys.stdout.flush()


def k3s_fatal(msg):
    k3s_log(msg, "fatal")
    sys.exit(1)


# ---------------------------------------------------------------------------- flags


def k3s_parse_flags(args):
    """`--a b`, `--a=b`, `--bool`, `-t x`: a dict of flag name to value (lists for the
    repeatable ones)."""
    short = {"t": "token", "s": "server", "c": "config"}
    flags = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-"):
            k3s_fatal("unexpected argument %s" % arg)
        name = arg.lstrip("-")
        value = None
        if "=" in name:
            name, value = name.split("=", 1)
        name = short.get(name, name)
        if value is None:
            if name in K3S_BOOLEAN_FLAGS:
                value = True
            elif i < len(args):
                value = args[i]
                i += 1
            else:
                k3s_fatal("flag --%s needs a value" % name)
        if name in K3S_BOOLEAN_FLAGS and isinstance(value, str):
            value = value.lower() in ("true", "1", "yes")
        k3s_set_flag(flags, name, value)
    return flags


def k3s_set_flag(flags, name, value):
    if name in K3S_LIST_FLAGS:
        values = value if isinstance(value, list) else [value]
        flags.setdefault(name, [])
        flags[name] = flags[name] + [str(v) for v in values]
    else:
        flags[name] = value


def k3s_load_config(path):
    if not os.path.exists(path):
        return {}
    try:
        import yaml
        with open(path) as f:
            loaded = yaml.safe_load(f) or {}
    except Exception as e:  # the file is the user's: say what and where
        k3s_fatal("reading %s: %s" % (path, e))
    if not isinstance(loaded, dict):
        k3s_fatal("%s: expected a mapping of flag names to values" % path)
    return loaded


def k3s_effective_flags(args):
    """config.yaml, then the environment, then the command line: the later wins (lists
    add up, as K3s's do)."""
    cli = k3s_parse_flags(args)
    flags = {}
    for name, value in k3s_load_config(cli.get("config", K3S_CONFIG)).items():
        k3s_set_flag(flags, str(name), value)
    for env, name in K3S_ENV_FLAGS.items():
        if os.environ.get(env):
            value = os.environ[env]
            if name in K3S_BOOLEAN_FLAGS:
                value = value.lower() in ("true", "1", "yes")
            flags[name] = value
    for name, value in cli.items():
        k3s_set_flag(flags, name, value)
    if flags.get("token-file") and not flags.get("token"):
        try:
            with open(flags["token-file"]) as f:
                flags["token"] = f.read().strip()
        except OSError as e:
            k3s_fatal("reading the token file %s: %s" % (flags["token-file"], e))
    return flags


# ---------------------------------------------------------------------------- tokens


def k3s_split_token(token):
    """(CA hash or None, secret) of a full `K10<hash>::<user>:<secret>` or a bare token."""
    token = token.strip()
    if token.startswith("K10") and "::" in token:
        ca_hash, rest = token[3:].split("::", 1)
        return ca_hash, rest.split(":", 1)[1] if ":" in rest else rest
    return None, token


def k3s_full_token(ca_pem, secret):
    return "K10%s::server:%s" % (hashlib.sha256(ca_pem.encode()).hexdigest(), secret)


def k3s_write_private(path, content, mode=0o600):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path))
    with os.fdopen(fd, "w") as f:
        f.write(content)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def k3s_read(path):
    with open(path) as f:
        return f.read()


# ---------------------------------------------------------------------------- certificates


def k3s_openssl(*args):
    done = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if done.returncode != 0:
        k3s_fatal("openssl %s: %s" % (args[0], done.stderr.strip()))


def k3s_make_ca(name):
    """A CA at K3S_TLS/name.{crt,key} (`name` may be `etcd/server-ca`), unless it is there."""
    key, crt = "%s/%s.key" % (K3S_TLS, name), "%s/%s.crt" % (K3S_TLS, name)
    if os.path.exists(crt):
        return
    os.makedirs(os.path.dirname(crt), mode=0o700, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".cnf") as conf:
        conf.write("[req]\ndistinguished_name=dn\nprompt=no\nx509_extensions=ext\n"
                   "[dn]\nCN=k3s-%s@%d\n[ext]\nbasicConstraints=critical,CA:TRUE\n"
                   "keyUsage=critical,keyCertSign,cRLSign,digitalSignature\n"
                   "subjectKeyIdentifier=hash\n" % (name.replace("/", "-"), int(time.time())))
        conf.flush()
        k3s_openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", crt,
                "-days", "3650", "-config", conf.name)
    os.chmod(key, 0o600)


def k3s_make_leaf(ca, name, cn, org=None, sans=(), usage="serverAuth"):
    """A certificate signed by the CA `ca` (a name under K3S_TLS), at K3S_TLS/name.{crt,key};
    `usage` its extended key usage (`serverAuth`, `clientAuth` or both, comma-separated)."""
    key, crt = "%s/%s.key" % (K3S_TLS, name), "%s/%s.crt" % (K3S_TLS, name)
    os.makedirs(os.path.dirname(crt), mode=0o700, exist_ok=True)
    subject = "/CN=%s" % cn + ("/O=%s" % org if org else "")
    with tempfile.TemporaryDirectory() as tmp:
        csr = tmp + "/req.csr"
        k3s_openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", key, "-out", csr, "-subj", subject)
        ext = tmp + "/ext.cnf"
        alt = []
        for san in sans:
            try:
                ipaddress.ip_address(san)
                alt.append("IP:%s" % san)
            except ValueError:
                alt.append("DNS:%s" % san)
        with open(ext, "w") as f:
            f.write("[ext]\nbasicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=%s\n" % usage)
            if alt:
                f.write("subjectAltName=%s\n" % ",".join(alt))
        k3s_openssl("x509", "-req", "-in", csr, "-CA", "%s/%s.crt" % (K3S_TLS, ca), "-CAkey",
                "%s/%s.key" % (K3S_TLS, ca), "-CAcreateserial", "-out", crt, "-days", "365",
                "-extfile", ext, "-extensions", "ext")
    os.chmod(key, 0o600)


# ---------------------------------------------------------------------------- the host


def k3s_node_ip(flags):
    if flags.get("node-ip"):
        return str(flags["node-ip"]).split(",")[0]
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            return parts[parts.index("inet") + 1].split("/")[0]
    k3s_fatal("no IPv4 address on this host: give --node-ip")


def k3s_node_name(flags):
    return str(flags.get("node-name") or socket.gethostname())


def k3s_notify(state):
    """sd_notify: one datagram to $NOTIFY_SOCKET, from this (the unit's main) process."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(path)
        s.sendall(state.encode())


def k3s_die_with_parent():
    """In the child: SIGTERM when this process dies, so no etcd outlives its k3s."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


# ---------------------------------------------------------------------------- etcd


def k3s_etcdctl(endpoints, *args, timeout=15):
    """(ok, stdout, stderr) of etcdctl against `endpoints`."""
    argv = ["etcdctl", "--endpoints=" + ",".join(endpoints), "--dial-timeout=3s",
            "--command-timeout=10s", "--cacert=" + K3S_ETCD_CA, "--cert=" + K3S_ETCD_CLIENT_CERT,
            "--key=" + K3S_ETCD_CLIENT_KEY, *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, ETCDCTL_API="3"))
    except subprocess.TimeoutExpired:
        return False, "", "etcdctl timed out after %d s" % timeout
    return done.returncode == 0, done.stdout, done.stderr.strip()


def k3s_etcd_certs(name, ip):
    """This server's etcd certificates, signed by the cluster's etcd CAs (made by the first
    server, carried to the others by the bootstrap data), unless they are there: K3s's
    names and usages (server-client and peer-server-client serve and dial; client only
    dials)."""
    sans = ["127.0.0.1", "localhost", "kine.sock", ip, name]
    for ca, leaf, cn, usage, names in (
            ("etcd/server-ca", "etcd/server-client", "etcd-server", "serverAuth,clientAuth", sans),
            ("etcd/peer-ca", "etcd/peer-server-client", "etcd-peer", "serverAuth,clientAuth", sans),
            ("etcd/server-ca", "etcd/client", "etcd-client", "clientAuth", ())):
        if not os.path.exists("%s/%s.crt" % (K3S_TLS, leaf)):
            k3s_make_leaf(ca, leaf, cn, None, names, usage)


def k3s_etcd_ssl():
    """A TLS context for etcd's client port: its CA, and K3s's etcd client certificate."""
    ctx = ssl.create_default_context(cafile=K3S_ETCD_CA)
    ctx.load_cert_chain(K3S_ETCD_CLIENT_CERT, K3S_ETCD_CLIENT_KEY)
    return ctx


def k3s_member_node(member_name):
    """The node a member is of: K3s names members `<node>-<8 hex digits>`."""
    node, dash, _ = member_name.rpartition("-")
    return node if dash and len(node) > 1 else member_name


class K3sEtcd:
    def __init__(self, node, ip):
        # K3s's member name: the node's, a dash and 8 hex digits, kept in db/etcd/name.
        try:
            self.name = k3s_read(K3S_ETCD_DIR + "/name").strip()
        except OSError:
            self.name = ""
        if not self.name:
            self.name = "%s-%s" % (node, _secrets.token_hex(4))
            self.save_name()
        self.ip = ip
        self.peer = "https://%s:%d" % (ip, K3S_ETCD_PEER)
        self.client = "https://%s:%d" % (ip, K3S_ETCD_CLIENT)
        self.proc = None

    def save_name(self):
        os.makedirs(K3S_ETCD_DIR, mode=0o700, exist_ok=True)
        k3s_write_private(K3S_ETCD_DIR + "/name", self.name)

    def has_data(self):
        return os.path.isdir(K3S_ETCD_DIR + "/member")

    def start(self, initial_cluster=None, state="new"):
        self.save_name()
        argv = ["etcd", "--name", self.name, "--data-dir", K3S_ETCD_DIR,
                "--listen-client-urls", "%s,%s" % (K3S_ETCD_LOCAL, self.client),
                "--advertise-client-urls", self.client,
                "--listen-peer-urls", self.peer,
                "--initial-advertise-peer-urls", self.peer,
                "--cert-file", K3S_ETCD_TLS + "/server-client.crt",
                "--key-file", K3S_ETCD_TLS + "/server-client.key",
                "--trusted-ca-file", K3S_ETCD_CA, "--client-cert-auth",
                "--peer-cert-file", K3S_ETCD_TLS + "/peer-server-client.crt",
                "--peer-key-file", K3S_ETCD_TLS + "/peer-server-client.key",
                "--peer-trusted-ca-file", K3S_ETCD_TLS + "/peer-ca.crt", "--peer-client-cert-auth",
                "--heartbeat-interval", "100", "--election-timeout", "1000",
                "--logger", "zap", "--log-level", "warn"]
        if initial_cluster:
            argv += ["--initial-cluster", initial_cluster, "--initial-cluster-state", state,
                     "--initial-cluster-token", "k3s-standin"]
        k3s_log("Starting etcd member %s (peer %s, client %s)" % (self.name, self.peer, self.client))
        # Not NOTIFY_SOCKET: READY=1 is this process's to say, once the node is.
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        self.proc = subprocess.Popen(argv, preexec_fn=k3s_die_with_parent, env=env,
                                     stdout=sys.stdout, stderr=sys.stdout)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_serving(self, what):
        """Until the member's client port answers (a learner answers too)."""
        while True:
            if not self.alive():
                k3s_fatal("etcd exited with status %s while %s" % (self.proc.returncode, what))
            try:
                with urllib.request.urlopen(K3S_ETCD_LOCAL + "/version", timeout=2,
                                            context=k3s_etcd_ssl()):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)

    def wait_healthy(self):
        last = 0.0
        while True:
            if not self.alive():
                k3s_fatal("etcd exited with status %s" % self.proc.returncode)
            try:
                with urllib.request.urlopen(K3S_ETCD_LOCAL + "/health", timeout=3,
                                            context=k3s_etcd_ssl()) as r:
                    if json.load(r).get("health") == "true":
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            if time.time() - last > 10:
                k3s_log("Waiting for etcd to be healthy")
                last = time.time()
            time.sleep(0.3)

    def stop(self):
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# ---------------------------------------------------------------------------- HTTPS on :6443


class K3sSupervisor:
    """What a server answers on :6443: K3s's supervisor paths, and the API stand-in (when
    this file carries it) for every other path."""

    def __init__(self, secret, agent_secret, endpoints):
        self.secret = secret
        self.agent_secret = agent_secret
        self.endpoints = endpoints  # a function: the etcd members' client URLs now
        self.api = None
        if "KubeApi" in globals():
            store = globals()["EtcdStore"](K3S_ETCD_LOCAL, tls=(
                K3S_ETCD_CA, K3S_ETCD_CLIENT_CERT, K3S_ETCD_CLIENT_KEY))
            tokens = {secret: "system:k3s-server", agent_secret: "system:k3s-agent"}
            self.api = globals()["KubeApi"](store, tokens=tokens, version=K3S_VERSION)

    def authorized(self, request, users):
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, given = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        expected = users.get(user)
        return expected is not None and hmac.compare_digest(given.encode(), expected.encode())

    def serve(self, request):
        path = request.path.split("?", 1)[0]
        if path == "/cacerts":
            return k3s_reply(request, 200, k3s_read(K3S_TLS + "/server-ca.crt"), "text/plain")
        if path == "/v1-k3s/server-bootstrap":
            if not self.authorized(request, {"server": self.secret}):
                return k3s_reply(request, 401, "Unauthorized\n", "text/plain")
            body = {name + ext: k3s_read("%s/%s%s" % (K3S_TLS, name, ext))
                    for name in K3S_SHARED_CAS for ext in (".crt", ".key")}
            body["etcd-endpoints"] = self.endpoints()
            return k3s_reply(request, 200, json.dumps(body), "application/json")
        if path == "/v1-k3s/client-ca.crt":
            users = {"node": self.agent_secret, "server": self.secret}
            if not self.authorized(request, users):
                return k3s_reply(request, 401, "Unauthorized\n", "text/plain")
            return k3s_reply(request, 200, k3s_read(K3S_TLS + "/client-ca.crt"), "text/plain")
        if path.startswith("/v1-k3s/"):
            return k3s_reply(request, 404, "404 page not found\n", "text/plain")
        if self.api is not None:
            return self.api.handle(request)
        if path in ("/readyz", "/livez", "/healthz"):
            return k3s_reply(request, 200, "ok", "text/plain")
        return k3s_reply(request, 404, "404 page not found\n", "text/plain")


def k3s_reply(request, code, body, ctype):
    data = body.encode()
    request.send_response(code)
    request.send_header("Content-Type", ctype)
    request.send_header("Content-Length", str(len(data)))
    request.end_headers()
    request.wfile.write(data)


def k3s_serve_https(supervisor):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def handle_one(self):
            try:
                supervisor.serve(self)
            except (BrokenPipeError, ConnectionResetError):
                pass

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_one

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(K3S_TLS + "/serving-kube-apiserver.crt", K3S_TLS + "/serving-kube-apiserver.key")
    ctx.load_verify_locations(K3S_TLS + "/client-ca.crt")
    ctx.verify_mode = ssl.CERT_OPTIONAL

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True

        def get_request(self):
            sock, addr = self.socket.accept()
            return sock, addr

        def finish_request(self, request, client_address):
            # The handshake in the request's own thread, so one slow client holds no other.
            try:
                request = ctx.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
            self.RequestHandlerClass(request, client_address, self)

    server = Server(("0.0.0.0", K3S_API_PORT), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    k3s_log("Serving the supervisor and the API on https://0.0.0.0:%d" % K3S_API_PORT)
    return server


def k3s_fetch(url, *, cadata=None, user=None, secret=None, timeout=5):
    """(status, body) of a GET; raises OSError when the server cannot be reached."""
    if cadata is None:
        ctx = ssl._create_unverified_context()
    else:
        ctx = ssl.create_default_context(cadata=cadata)
    req = urllib.request.Request(url)
    if user is not None:
        cred = base64.b64encode(("%s:%s" % (user, secret)).encode()).decode()
        req.add_header("Authorization", "Basic " + cred)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except urllib.error.URLError as e:
        raise OSError(str(e.reason)) from e


def k3s_trusted_ca(server_url, token):
    """The server's CA, checked against the token's hash; waits while it cannot be
    reached, for ever, as K3s does."""
    ca_hash, _ = k3s_split_token(token)
    last = 0.0
    while True:
        try:
            status, ca = k3s_fetch(server_url + "/cacerts")
            if status == 200:
                break
            reason = "HTTP %d" % status
        except OSError as e:
            reason = str(e)
        if time.time() - last > 10:
            k3s_log("Waiting to retrieve the cluster CA from %s: %s" % (server_url, reason),
                "warning")
            last = time.time()
        time.sleep(K3S_RETRY_SECONDS)
    if ca_hash is not None and hashlib.sha256(ca.encode()).hexdigest() != ca_hash:
        raise K3sRefused("token CA hash does not match the server's CA (/cacerts) at %s"
                      % server_url)
    return ca


def k3s_authenticated(server_url, path, ca, user, secret):
    """The body of `path` on the server, with the token; waits while it cannot be
    reached."""
    last = 0.0
    while True:
        try:
            status, body = k3s_fetch(server_url + path, cadata=ca, user=user, secret=secret)
            if status == 200:
                return body
            if status == 401:
                raise K3sRefused("the server at %s refused the token (401)" % server_url)
            reason = "HTTP %d" % status
        except OSError as e:
            reason = str(e)
        if time.time() - last > 10:
            k3s_log("Waiting for %s%s: %s" % (server_url, path, reason), "warning")
            last = time.time()
        time.sleep(K3S_RETRY_SECONDS)


# ---------------------------------------------------------------------------- nodes


def k3s_register_node(api_url, ca, bearer, name, ip, roles):
    """The Node through the API stand-in, Ready, then a heartbeat: what the kubelet does.
    Only when this file carries the API stand-in."""
    if "KubeApi" not in globals():
        return
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
              "kubernetes.io/arch": "amd64", "node.kubernetes.io/instance-type": "k3s"}
    for role in roles:
        labels["node-role.kubernetes.io/%s" % role] = "true"

    def status():
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "addresses": [{"type": "InternalIP", "address": ip},
                          {"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": K3S_VERSION, "kubeProxyVersion": K3S_VERSION,
                         "containerRuntimeVersion": "containerd://stand-in",
                         "operatingSystem": "linux", "architecture": "amd64",
                         "osImage": "Debian GNU/Linux 12 (bookworm)"},
        }

    ctx = ssl.create_default_context(cadata=ca)
    ctx.check_hostname = False

    def call(method, path, body, ctype="application/json"):
        req = urllib.request.Request(api_url + path, data=json.dumps(body).encode(),
                                     method=method)
        req.add_header("Authorization", "Bearer " + bearer)
        req.add_header("Content-Type", ctype)
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels}, "status": status()}
    deadline = time.time() + 60
    while True:
        try:
            code = call("POST", "/api/v1/nodes", node)
            if code == 409:
                call("PATCH", "/api/v1/nodes/" + name, {"metadata": {"labels": labels}},
                     "application/merge-patch+json")
                code = call("PATCH", "/api/v1/nodes/%s/status" % name,
                            {"status": status()}, "application/merge-patch+json")
            if code < 300:
                break
            reason = "HTTP %d" % code
        except OSError as e:
            reason = str(e)
        if time.time() > deadline:
            k3s_log("Registering node %s: %s; going on" % (name, reason), "warning")
            return
        time.sleep(1)
    k3s_log("Node %s registered, Ready" % name)

    def heartbeat():
        while True:
            time.sleep(10)
            try:
                call("PATCH", "/api/v1/nodes/%s/status" % name, {"status": status()},
                     "application/merge-patch+json")
            except OSError:
                pass

    threading.Thread(target=heartbeat, daemon=True).start()


def k3s_member_controller(ca, bearer):
    """K3s's etcd member controller, in spirit: a server Node deleted from the API takes
    its etcd member with it. Polls the API; acts on Nodes this process saw, then misses.
    Only when this file carries the API stand-in."""
    ctx = ssl.create_default_context(cadata=ca)
    ctx.check_hostname = False
    url = "https://127.0.0.1:%d/api/v1/nodes" % K3S_API_PORT
    seen, pending = set(), set()
    while True:
        time.sleep(2)
        req = urllib.request.Request(url)
        req.add_header("Authorization", "Bearer " + bearer)
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                items = json.load(r).get("items", [])
        except (OSError, ValueError):
            continue
        names = {n["metadata"]["name"] for n in items
                 if (n["metadata"].get("labels") or {}).get("node-role.kubernetes.io/etcd")
                 == "true"}
        # Nodes seen, then missing: their members go; a removal etcd refuses (a cluster
        # unhealthy for a moment) is tried again on the next poll, as K3s requeues it.
        pending = (pending | (seen - names)) - names
        seen = names
        for name in sorted(pending):
            try:
                members = k3s_members_of([K3S_ETCD_LOCAL])
            except (OSError, ValueError):
                continue
            left = False
            for m in members:
                if k3s_member_node(m.get("name") or "") == name:
                    ok, _, err = k3s_etcdctl([K3S_ETCD_LOCAL],
                                             "member", "remove", "%x" % m["ID"])
                    if ok:
                        k3s_log("Removed etcd member %s: its Node was deleted" % m["name"])
                    else:
                        left = True
                        k3s_log("Removing etcd member %s: %s" % (m["name"], err.splitlines()[-1]
                                                                  if err else "failed"), "warning")
            if not left:
                pending.discard(name)


# ---------------------------------------------------------------------------- manifests

K3S_MANIFESTS = K3S_SERVER + "/manifests"


def k3s_deploy_controller(api, node):
    """K3s's deploy controller: every manifest in K3S_MANIFESTS (.yaml, .yml, .json; several
    documents in one file) applied to the API, again whenever the file changes. Server-side
    apply by the manager `deploy@NODE`, forced (K3s's controller owns what it deploys).
    Kinds the API stand-in does not serve are skipped with a log line. Only when this file
    carries the API stand-in (its names resolve then)."""
    import yaml
    applied = {}  # path -> digest of what was applied
    skipped = set()
    while True:
        try:
            names = sorted(os.listdir(K3S_MANIFESTS))
        except OSError:
            names = []
        for fname in names:
            if not fname.endswith((".yaml", ".yml", ".json")) or fname.startswith("."):
                continue
            path = os.path.join(K3S_MANIFESTS, fname)
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            digest = hashlib.sha256(data).hexdigest()
            if applied.get(path) == digest:
                continue
            try:
                docs = [d for d in yaml.safe_load_all(data) if d]
                for doc in docs:
                    k3s_apply_manifest(api, node, fname, doc, skipped)
            except Exception as e:  # the file is the user's: say which, try again later
                k3s_log("Applying manifest %s: %s" % (path, e), "warning")
                continue
            applied[path] = digest
            k3s_log("Applied manifest %s (%d objects)" % (path, len(docs)))
        time.sleep(2)


def k3s_apply_manifest(api, node, fname, doc, skipped):
    if not isinstance(doc, dict):
        raise ValueError("a document that is not an object")
    if doc.get("kind") == "List":
        for item in doc.get("items") or []:
            k3s_apply_manifest(api, node, fname, item, skipped)
        return
    kind, version = doc.get("kind"), doc.get("apiVersion")
    meta = doc.get("metadata") or {}
    name = meta.get("name")
    res = next((r for r in RESOURCES if r.kind == kind and r.api_version == version), None)
    if res is None:
        if (fname, kind, name) not in skipped:
            skipped.add((fname, kind, name))
            k3s_log("Manifest %s: skipping %s %s %s: not a kind the API stand-in serves"
                    % (fname, version, kind, name))
        return
    if not name:
        raise ValueError("a %s without metadata.name" % kind)
    namespace = (meta.get("namespace") or "default") if res.namespaced else None
    manager = "deploy@" + node
    live = None
    try:
        live = api.read(res, namespace, name)
    except ApiError as e:
        if e.code != 404:
            raise
    merged = apply_patch(live, doc, manager, True, res.api_version, now_rfc3339())
    merged.setdefault("metadata", {})["name"] = name
    if live is None:
        api.create(res, namespace, merged)
    else:
        api.write(res, namespace, name, live, merged)


# ---------------------------------------------------------------------------- images


def k3s_load_registries():
    """registries.yaml's `mirrors`, as K3s reads it when it starts; None without the file."""
    if not os.path.exists(K3S_REGISTRIES):
        return None
    mirrors = k3s_load_config(K3S_REGISTRIES).get("mirrors") or {}
    if not isinstance(mirrors, dict):
        k3s_fatal("%s: `mirrors` is not a mapping of registries" % K3S_REGISTRIES)
    k3s_log("Using private registry config file at %s" % K3S_REGISTRIES)
    return mirrors


def k3s_split_image(image):
    """(registry, repository, tag or digest) of an image reference, as containerd reads it."""
    name, ref = image, "latest"
    if "@" in name:
        name, ref = name.split("@", 1)
    elif ":" in name.rsplit("/", 1)[-1]:
        name, ref = name.rsplit(":", 1)
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, repo = first, rest
    else:
        registry, repo = "docker.io", name
    if registry == "docker.io" and "/" not in repo:
        repo = "library/" + repo
    return registry, repo, ref


def k3s_pull(image, mirrors):
    """(pulled, what happened) for `image` through the mirrors registries.yaml names."""
    registry, repo, ref = k3s_split_image(image)
    entry = mirrors.get(registry) or mirrors.get("*")
    if not isinstance(entry, dict):
        return True, "no mirror for %s: %s from upstream" % (registry, image)
    for rule, into in (entry.get("rewrite") or {}).items():
        repo = re.sub(str(rule), re.sub(r"\$(\d+)", r"\\\1", str(into)), repo)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    last = "no endpoint"
    for endpoint in entry.get("endpoint") or []:
        url = "%s/v2/%s/manifests/%s" % (str(endpoint).rstrip("/"), repo, ref)
        request = urllib.request.Request(url, headers={"Accept": K3S_MANIFEST_TYPES})
        try:
            with opener.open(request, timeout=5) as answer:
                answer.read()
            return True, "pulled %s through the mirror %s" % (image, endpoint)
        except urllib.error.HTTPError as e:
            last = "%s: %s %s" % (url, e.code, e.reason)
        except (OSError, ValueError) as e:
            last = "%s: %s" % (url, e)
    return False, "failed to pull image %s: %s" % (image, last)


# ---------------------------------------------------------------------------- kube-vip


class K3sKubeVip:
    """kube-vip in ARP mode for the control plane, as its DaemonSet's pod would run on this
    server: while kube-system has a DaemonSet running a `kube-vip` image with
    `cp_enable=true`, leader election on the Lease `vip_leasename` (default plndr-cp-lock)
    in `cp_namespace` (default kube-system) as client-go's does (holderIdentity the node's
    name, renewed every `vip_retryperiod`, taken over once the holder has not renewed it
    for `vip_leaseduration` as this server observed it, given up when not renewed within
    `vip_renewdeadline`); the holder adds `address`/32 to `vip_interface` and sends
    gratuitous ARP when `arping` is there; a server that loses the lease, or stops, or
    whose DaemonSet goes, removes the address."""

    def __init__(self, api, node, ip, mirrors=None):
        self.api, self.node, self.ip = api, node, ip
        # registries.yaml's mirrors (None: no file, no pull), the images pulled, and the
        # last thing a pull said (said once).
        self.mirrors, self.pulled, self.pull_said = mirrors, set(), None
        self.held = None  # (address, interface) this server has added
        self.observed = None  # (holder, renewTime) as last read, and when it changed
        self.observed_at = 0.0
        self.renewed_at = 0.0
        self.renew_deadline = 3
        self.stopped = False
        self.lock = threading.Lock()

    def config(self):
        """The kube-vip container's env, from its DaemonSet; None when there is none."""
        res = next(r for r in RESOURCES if r.plural == "daemonsets")
        sets, _ = self.api.list_objects(res, "kube-system")
        for ds in sets:
            pod = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
            for c in pod.get("containers") or []:
                image = str(c.get("image") or "")
                if "kube-vip" not in image.rsplit("/", 1)[-1]:
                    continue
                env = {e.get("name"): str(e.get("value", "")) for e in c.get("env") or []
                       if isinstance(e, dict)}
                if not self.pull(image):
                    return None
                return env
        return None

    def pull(self, image):
        """Whether the pod's image is here: pulled through registries.yaml's mirrors."""
        if self.mirrors is None or image in self.pulled:
            return True
        ok, said = k3s_pull(image, self.mirrors)
        if said != self.pull_said:
            k3s_log("kube-vip stand-in: %s" % said, "info" if ok else "error")
            self.pull_said = said
        if ok:
            self.pulled.add(image)
        return ok

    def stop(self):
        """The server stops: the address goes, and is not added again."""
        with self.lock:
            self.stopped = True
            self.step_down()

    def run(self):
        while True:
            wait = 1.0
            try:
                with self.lock:
                    if self.stopped:
                        return
                    wait = self.tick()
            except Exception as e:  # the API or etcd unreachable for a moment: again
                k3s_log("kube-vip stand-in: %s" % e, "warning")
                if self.held and time.time() - self.renewed_at > self.renew_deadline:
                    self.step_down()
            time.sleep(wait)

    def tick(self):
        env = self.config()
        if env is None or env.get("cp_enable", "false").lower() != "true":
            self.step_down()
            return 2.0
        address = env.get("address") or env.get("vip_address")
        if not address:
            k3s_log("kube-vip stand-in: the DaemonSet gives no address", "warning")
            return 5.0
        interface = env.get("vip_interface") or self.interface_of(self.ip)
        lease_name = env.get("vip_leasename") or "plndr-cp-lock"
        namespace = env.get("cp_namespace") or "kube-system"
        duration = int(env.get("vip_leaseduration") or 5)
        self.renew_deadline = int(env.get("vip_renewdeadline") or 3)
        retry = float(env.get("vip_retryperiod") or 1)
        if self.held and self.held != (address, interface):
            self.step_down()
        if self.elect(namespace, lease_name, duration):
            self.renewed_at = time.time()
            self.hold(address, interface, env.get("vip_arp", "false").lower() == "true")
        elif self.held:
            k3s_log("kube-vip stand-in: lost the lease %s" % lease_name)
            self.step_down()
        return retry

    def elect(self, namespace, name, duration):
        """Whether this server holds the lease now (taken or renewed)."""
        res = next(r for r in RESOURCES if r.plural == "leases")
        now = time.time()
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        try:
            lease = self.api.read(res, namespace, name)
        except ApiError as e:
            if e.code != 404:
                raise
            lease = None
        if lease is None:
            obj = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                   "metadata": {"name": name, "namespace": namespace},
                   "spec": {"holderIdentity": self.node, "leaseDurationSeconds": duration,
                            "acquireTime": stamp, "renewTime": stamp, "leaseTransitions": 0}}
            try:
                self.api.create(res, namespace, obj)
            except ApiError:
                return False
            k3s_log("kube-vip stand-in: took the lease %s" % name)
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"))
        if record != self.observed:
            self.observed, self.observed_at = record, now
        if holder and holder != self.node and now < self.observed_at + int(
                spec.get("leaseDurationSeconds") or duration):
            return False
        new = copy.deepcopy(lease)
        new_spec = new.setdefault("spec", {})
        if holder != self.node:
            new_spec["acquireTime"] = stamp
            new_spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        new_spec.update({"holderIdentity": self.node, "leaseDurationSeconds": duration,
                         "renewTime": stamp})
        try:
            self.api.write(res, namespace, name, lease, new)
        except ApiError:
            return False  # another server wrote it first
        if holder != self.node:
            k3s_log("kube-vip stand-in: took the lease %s from %s" % (name, holder or "no one"))
        return True

    @staticmethod
    def interface_of(ip):
        out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True,
                             text=True).stdout
        for line in out.splitlines():
            parts = line.split()
            if "inet" in parts and parts[parts.index("inet") + 1].split("/")[0] == ip:
                return parts[1]
        raise OSError("no interface has %s: give vip_interface" % ip)

    @staticmethod
    def has(address, interface):
        out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", interface],
                             capture_output=True, text=True).stdout
        return any(("inet %s/" % address) in line for line in out.splitlines())

    def hold(self, address, interface, arp):
        self.held = (address, interface)
        if self.has(address, interface):
            return
        done = subprocess.run(["ip", "addr", "add", "%s/32" % address, "dev", interface],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise OSError("ip addr add %s/32 dev %s: %s" % (address, interface,
                                                             done.stderr.strip()))
        k3s_log("kube-vip stand-in: added %s/32 to %s" % (address, interface))
        if arp and shutil.which("arping"):
            subprocess.Popen(["arping", "-c", "3", "-U", "-I", interface, address],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def step_down(self):
        if not self.held:
            return
        address, interface = self.held
        self.held = None
        if self.has(address, interface):
            subprocess.run(["ip", "addr", "del", "%s/32" % address, "dev", interface],
                           capture_output=True)
            k3s_log("kube-vip stand-in: removed %s/32 from %s" % (address, interface))


# ---------------------------------------------------------------------------- server


def k3s_server_certs(flags, name, ip):
    k3s_etcd_certs(name, ip)
    sans = ["127.0.0.1", "localhost", "kubernetes", "kubernetes.default",
            "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", ip, name]
    for san in flags.get("tls-san", []):
        sans.extend(s for s in str(san).split(",") if s)
    k3s_make_leaf("server-ca", "serving-kube-apiserver", "k3s", None, sans, "serverAuth")
    if not os.path.exists(K3S_TLS + "/client-admin.crt"):
        k3s_make_leaf("client-ca", "client-admin", "system:admin", "system:masters", (),
                  "clientAuth")


def k3s_write_kubeconfig(flags):
    b64 = lambda path: base64.b64encode(k3s_read(path).encode()).decode()
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "default", "cluster": {
            "server": "https://127.0.0.1:%d" % K3S_API_PORT,
            "certificate-authority-data": b64(K3S_TLS + "/server-ca.crt")}}],
        "users": [{"name": "default", "user": {
            "client-certificate-data": b64(K3S_TLS + "/client-admin.crt"),
            "client-key-data": b64(K3S_TLS + "/client-admin.key")}}],
        "contexts": [{"name": "default", "context": {"cluster": "default", "user": "default"}}],
        "current-context": "default",
    }
    mode = int(str(flags.get("write-kubeconfig-mode", "0600")), 8)
    path = flags.get("write-kubeconfig", K3S_KUBECONFIG)
    k3s_write_private(path, json.dumps(config, indent=2) + "\n", mode)
    k3s_log("Wrote kubeconfig %s" % path)


def k3s_write_tokens(ca_pem, secret, agent_secret):
    token = k3s_full_token(ca_pem, secret)
    k3s_write_private(K3S_SERVER + "/token", token + "\n")
    k3s_write_private(K3S_SERVER + "/node-token", token + "\n")
    k3s_write_private(K3S_SERVER + "/agent-token", k3s_full_token(ca_pem, agent_secret) + "\n")


def k3s_run_server(flags):
    began = time.time()
    name, ip = k3s_node_name(flags), k3s_node_ip(flags)
    os.makedirs(K3S_SERVER, mode=0o700, exist_ok=True)
    etcd = K3sEtcd(name, ip)
    join_url = flags.get("server")
    token = flags.get("token")
    endpoints_file = K3S_SERVER + "/db/join-endpoints"
    k3s_stop_on_term(etcd)

    if join_url:
        join_url = str(join_url).rstrip("/")
        if not token:
            k3s_fatal("joining %s needs a token: set --token, K3S_TOKEN or K3S_TOKEN_FILE"
                  % join_url)
    if os.path.exists(K3S_SERVER + "/token"):
        _, secret = k3s_split_token(k3s_read(K3S_SERVER + "/token"))
        if token and not hmac.compare_digest(k3s_split_token(token)[1].encode(), secret.encode()):
            # K3s: the bootstrap data is keyed by the token; another one cannot read it.
            raise K3sRefused("the token given is not this server's (%s/token): "
                             "bootstrap data already found and encrypted with a different "
                             "token" % K3S_SERVER)
    elif join_url:
        secret = None
    else:
        secret = k3s_split_token(token)[1] if token else _secrets.token_hex(16)

    if not join_url or etcd.has_data() and os.path.exists(K3S_SERVER + "/token"):
        # The first server, or a server that has joined before: its own data.
        if not os.path.exists(K3S_TLS + "/server-ca.crt"):
            k3s_log("Generating the cluster's certificate authorities")
        for ca in K3S_SHARED_CAS:
            k3s_make_ca(ca)
        agent_secret = k3s_split_token(flags.get("agent-token") or secret)[1]
        k3s_write_tokens(k3s_read(K3S_TLS + "/server-ca.crt"), secret, agent_secret)
        k3s_server_certs(flags, name, ip)
        if etcd.has_data():
            k3s_log("Starting etcd with its existing data")
            etcd.start()
        else:
            k3s_log("Starting a new etcd cluster (cluster-init)")
            etcd.start("%s=%s" % (etcd.name, etcd.peer), "new")
        etcd.wait_serving("starting")
        if os.path.exists(endpoints_file):
            k3s_promote(etcd, json.loads(k3s_read(endpoints_file)))
        etcd.wait_healthy()
    else:
        agent_secret = k3s_join_server(flags, etcd, join_url, token, name, ip, endpoints_file)
        _, secret = k3s_split_token(k3s_read(K3S_SERVER + "/token"))

    k3s_write_kubeconfig(flags)
    members = lambda: k3s_member_client_urls(etcd)
    supervisor = K3sSupervisor(secret, agent_secret, members)
    k3s_serve_https(supervisor)
    if supervisor.api is not None:
        supervisor.api.start_controllers()
        k3s_register_node("https://127.0.0.1:%d" % K3S_API_PORT, k3s_read(K3S_TLS + "/server-ca.crt"),
                      secret, name, ip, ["control-plane", "etcd", "master"])
        threading.Thread(target=k3s_member_controller,
                         args=(k3s_read(K3S_TLS + "/server-ca.crt"), secret),
                         daemon=True).start()
        threading.Thread(target=k3s_deploy_controller, args=(supervisor.api, name),
                         daemon=True).start()
        vip = K3sKubeVip(supervisor.api, name, ip, k3s_load_registries())
        K3S_ON_STOP.append(vip.stop)
        threading.Thread(target=vip.run, daemon=True).start()
    rest = K3S_JOIN_SECONDS - (time.time() - began)
    if join_url and rest > 0:
        time.sleep(rest)
    k3s_log("k3s is up and running")
    k3s_notify("READY=1")
    while etcd.alive():
        time.sleep(1)
    k3s_fatal("etcd exited with status %s" % etcd.proc.returncode)


def k3s_member_client_urls(etcd):
    ok, out, _ = k3s_etcdctl([K3S_ETCD_LOCAL], "member", "list", "-w", "json")
    urls = []
    if ok:
        for m in json.loads(out).get("members", []):
            urls.extend(m.get("clientURLs") or [])
    return urls or [etcd.client]


def k3s_join_server(flags, etcd, join_url, token, name, ip, endpoints_file):
    k3s_log("Joining the cluster through %s" % join_url)
    _, secret = k3s_split_token(token)
    ca = k3s_trusted_ca(join_url, token)
    boot = json.loads(k3s_authenticated(join_url, "/v1-k3s/server-bootstrap", ca, "server", secret))
    k3s_log("Retrieved the cluster's bootstrap data from %s" % join_url)
    os.makedirs(K3S_TLS, mode=0o700, exist_ok=True)
    for fname in (name + ext for name in K3S_SHARED_CAS for ext in (".crt", ".key")):
        k3s_write_private("%s/%s" % (K3S_TLS, fname), boot[fname])
    agent_secret = k3s_split_token(flags.get("agent-token") or secret)[1]
    k3s_write_tokens(boot["server-ca.crt"], secret, agent_secret)
    k3s_server_certs(flags, name, ip)
    endpoints = [u for u in boot["etcd-endpoints"] if u != etcd.client]
    k3s_write_private(endpoints_file, json.dumps(endpoints))

    if etcd.has_data():
        k3s_log("Starting etcd with its existing data")
        etcd.start()
    else:
        members = k3s_add_learner(etcd, endpoints)
        initial = []
        for m in members:
            member_name = m.get("name") or ""
            if etcd.peer in (m.get("peerURLs") or []):
                member_name = etcd.name
            elif not member_name:
                member_name = "unstarted-%x" % m["ID"]
            initial.extend("%s=%s" % (member_name, u) for u in m.get("peerURLs") or [])
        shutil.rmtree(K3S_ETCD_DIR, ignore_errors=True)
        etcd.start(",".join(initial), "existing")
    etcd.wait_serving("joining")
    time.sleep(K3S_LEARNER_SECONDS)
    k3s_promote(etcd, endpoints)
    etcd.wait_healthy()
    k3s_log("etcd member %s is a voting member" % etcd.name)
    return agent_secret


def k3s_members_of(endpoints):
    ok, out, err = k3s_etcdctl(endpoints, "member", "list", "-w", "json")
    if not ok:
        raise OSError(err)
    return json.loads(out).get("members", [])


def k3s_add_learner(etcd, endpoints):
    """Adds this server as a learner, once: etcd refuses a second learner, and this waits
    until the other one is promoted. The members, this one included."""
    last = 0.0
    while True:
        try:
            members = k3s_members_of(endpoints)
            mine = [m for m in members if etcd.peer in (m.get("peerURLs") or [])]
            if mine and not mine[0].get("name"):
                k3s_log("etcd already has this server as an unstarted member: starting it")
                return members
            if mine:
                raise K3sRefused("etcd member %s already has the peer URL %s: remove it first"
                              % (mine[0].get("name"), etcd.peer))
            ok, out, err = k3s_etcdctl(endpoints, "member", "add", etcd.name,
                                   "--peer-urls=" + etcd.peer, "--learner", "-w", "json")
            if ok:
                k3s_log("Added etcd member %s as a learner" % etcd.name)
                return json.loads(out).get("members", [])
            reason = err
        except (OSError, ValueError) as e:
            reason = str(e)
        if time.time() - last > 5:
            k3s_log("Waiting to add etcd learner %s: %s" % (etcd.name, reason), "warning")
            last = time.time()
        time.sleep(K3S_RETRY_SECONDS)


def k3s_promote(etcd, endpoints):
    """Promotes this member once etcd says the learner has caught up; waits until then."""
    last = 0.0
    while True:
        if not etcd.alive():
            k3s_fatal("etcd exited with status %s while joining" % etcd.proc.returncode)
        try:
            mine = [m for m in k3s_members_of(endpoints + [etcd.client])
                    if etcd.peer in (m.get("peerURLs") or [])]
            if mine and not mine[0].get("isLearner"):
                return
            if mine:
                ok, _, err = k3s_etcdctl(endpoints, "member", "promote", "%x" % mine[0]["ID"])
                if ok:
                    k3s_log("Promoted etcd member %s to a voting member" % etcd.name)
                    return
                reason = err
            else:
                reason = "this member is not in the member list"
        except (OSError, ValueError) as e:
            reason = str(e)
        if time.time() - last > 5:
            k3s_log("Waiting to promote etcd learner %s: %s" % (etcd.name, reason))
            last = time.time()
        time.sleep(1)


# What a stopping server undoes before it exits (the kube-vip stand-in's address).
K3S_ON_STOP = []


def k3s_stop_on_term(etcd):
    def handler(signum, frame):
        k3s_log("Received %s: shutting down" % signal.Signals(signum).name)
        for undo in K3S_ON_STOP:
            try:
                undo()
            except Exception as e:  # stopping goes on whatever one undo says
                k3s_log("Stopping: %s" % e, "warning")
        etcd.stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


# ---------------------------------------------------------------------------- agent


def k3s_run_agent(flags):
    began = time.time()
    url, token = flags.get("server"), flags.get("token")
    if not url:
        k3s_fatal("an agent needs --server (K3S_URL)")
    if not token:
        k3s_fatal("an agent needs a token: --token, K3S_TOKEN or K3S_TOKEN_FILE")
    url = str(url).rstrip("/")
    if not url.startswith("https://"):
        k3s_fatal("K3S_URL %s: expected an https:// URL" % url)
    name, ip = k3s_node_name(flags), k3s_node_ip(flags)
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(0))
    k3s_log("Starting k3s agent %s; server %s" % (K3S_VERSION, url))
    _, secret = k3s_split_token(token)
    ca = k3s_trusted_ca(url, token)
    k3s_authenticated(url, "/v1-k3s/client-ca.crt", ca, "node", secret)
    k3s_log("The server at %s accepted the node's token" % url)
    k3s_register_node(url, ca, secret, name, ip, [])
    rest = K3S_JOIN_SECONDS - (time.time() - began)
    if rest > 0:
        time.sleep(rest)
    k3s_log("k3s agent is up and running")
    k3s_notify("READY=1")
    while True:
        time.sleep(3600)


def k3s_main(argv):
    if not argv or argv[0] in ("-h", "--help", "help"):
        print("usage: k3s [--version] server|agent [flags]  (the lab's K3s stand-in)")
        return 0 if argv else 1
    if argv[0] in ("--version", "-v", "version"):
        print("k3s version %s (stand-in)" % K3S_VERSION)
        print("go version go1.23.8 (stand-in: python %s)" % sys.version.split()[0])
        return 0
    command, args = argv[0], argv[1:]
    if command not in ("server", "agent"):
        print("k3s stand-in: `%s` is not there (server, agent, --version)" % command,
              file=sys.stderr)
        return 1
    flags = k3s_effective_flags(args)
    k3s_log("Starting k3s %s %s (stand-in)" % (command, K3S_VERSION))
    try:
        if command == "server":
            k3s_run_server(flags)
        else:
            k3s_run_agent(flags)
    except K3sRefused as e:
        k3s_fatal(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(k3s_main(sys.argv[1:]))
