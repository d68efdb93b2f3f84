"""A stand-in for the Kubernetes API server, as K3s serves it, for the lab and the tests only.

No Kubernetes API server can run where Foundry is tested, so this program answers the
real `kube` crate and the real `kubectl` in its place. Behaviour proven only against it
is not proven against a real API server. What it keeps of the real contract:

- No OpenAPI documents (/openapi/v2, /openapi/v3 answer 404): kubectl create and apply
  need --validate=false against it; get, patch, cordon and drain do not.
- HTTPS only (TLS 1.2+), authentication by a client certificate signed by the client CA
  or by a bearer token from a token file (`token,user,uid,"groups"` as kube-apiserver's
  --token-auth-file); anything else is a 401 Status. No authorization (RBAC): every
  authenticated client may do everything.
- `/version`, `/readyz`, `/livez`, `/healthz`; legacy discovery (`/api`, `/api/v1`,
  `/apis`, `/apis/GROUP/VERSION`) answered as plain JSON, also to clients that ask for
  aggregated discovery, which then fall back as they do from an older server.
- Core v1 nodes (+status), namespaces, pods (+eviction, log), secrets, events;
  coordination.k8s.io/v1 leases; policy/v1 poddisruptionbudgets; batch/v1 jobs (+status);
  apps/v1 daemonsets; helm.cattle.io/v1 helmcharts (+status); cert-manager.io/v1
  clusterissuers and certificates (+status), kept by the cert-manager stand-in below.
- get, list (label selectors `=`, `==`, `!=`, `in`, `notin`, exists, `!key`; field
  selectors on metadata.name, metadata.namespace, spec.nodeName, status.phase; `limit`
  is ignored: one page), watch (`?watch=1` from a resourceVersion, bookmarks when asked,
  an ERROR event with 410 Expired for a compacted version), create, update (PUT; 409
  Conflict on a stale resourceVersion), delete (immediate: no finalizers, no grace
  period, no garbage collection), and patch: JSON merge patch, JSON patch, strategic
  merge patch treated as a merge patch (enough for the maps kubectl cordon sends), and
  server-side apply (`application/apply-patch+yaml` with a JSON body, `fieldManager`,
  `force`).
- Server-side apply tracks managers coarsely: a manager owns field paths at most three
  levels deep (`spec.values.x`; lists are atomic) in `metadata.managedFields`. An apply
  creates the object when absent and merges into it when present, drops the fields its
  manager applied before and no longer applies, and answers 409 Conflict when another
  manager owns a field it sets to a different value, unless `force=true`.
- Errors are `kind: Status` objects with the real `reason`, `code` and `message`.
- Evictions (policy/v1) honour PodDisruptionBudgets (`minAvailable`/`maxUnavailable`,
  integers or percentages; healthy = phase Running): 429 TooManyRequests "Cannot evict
  pod as it would violate the pod's disruption budget." otherwise the pod is deleted.
- Server-side printing (`as=Table`) for nodes (NAME STATUS ROLES AGE VERSION), helmcharts
  (the CRD's printer columns) and NAME AGE for the rest.
- State in this process (MemoryStore) or in a real etcd 3.4 through its v3 JSON gateway
  (EtcdStore) under `/registry/<resource>/<namespace>/<name>` as the real apiserver lays
  keys out (nodes under `minions`, custom resources under their group), values as JSON,
  with `metadata.resourceVersion` the key's etcd mod_revision: two stand-ins on one etcd
  see the same objects.
- A HelmChart controller playing K3s's helm-controller: each HelmChart gets a Job
  `helm-install-NAME` and its Pod, whose log reads like helm's; after HELM_JOB_SECONDS the
  Job completes and a release Secret `sh.helm.release.v1.NAME.vN` (labels owner=helm,
  name=NAME, status=deployed) appears in the target namespace, its record naming the
  chart version the HelmChart asks for (the table's when it asks none). Charts are known from a
  small table (contour, cert-manager, foundry-test) with their allowed top-level values
  keys: a value outside it fails the Job with helm's schema error (the real Job would
  retry with backoff; this one fails once), and the HelmChart's `Failed` condition is
  True. `chartContent` charts accept any values and install at the version their
  archive's Chart.yaml gives (an archive helm cannot read fails the Job); over 1 MiB the HelmChart is refused
  (422 on spec.chartContent). A changed HelmChart runs a new Job. A deleted HelmChart
  leaves its Job and release (no helm-delete Job). Pod logs are kept beside the objects
  under `/registry/standin.foundry/podlogs/`, a key of the stand-in's own.
- A cert-manager stand-in (a controller of this program, no cert-manager binary), which runs
  only once a HelmChart of the chart `cert-manager` has a deployed release, in that
  release's namespace (cert-manager's cluster resource namespace), every
  CERT_MANAGER_SECONDS. It keeps cert-manager's contract for ClusterIssuers'
  `status.conditions[type=Ready]` (reason, message, observedGeneration, as cert-manager
  v1's issuers set them): selfSigned is Ready (`IsReady`); ca is Ready (`KeyPairVerified`,
  "Signing CA verified") once its Secret in that namespace holds `tls.crt` and `tls.key`
  and the certificate is a CA (read by the real `openssl`), else False with
  `ErrGetKeyPair` ("Error getting keypair for CA issuer: secret "x" not found", or "no data
  for "tls.key" in secret 'ns/x'") or `ErrInvalidKeyPair` ("... certificate is not a CA");
  acme is False with `ErrRegisterACMEAccount` ("Failed to register ACME account: ...")
  unless its server is on loopback and answers its directory with `newAccount`, then
  Ready (`ACMEAccountRegistered`): nothing here reaches the internet, and no account is
  really registered. Certificates issued by a Ready selfSigned ClusterIssuer get their
  Secret (`kubernetes.io/tls`: an ECDSA P-256 key and a certificate made by the real
  `openssl`, a CA when `isCA`) and Ready True; a Certificate whose Secret is there is left
  alone (no renewal, no re-issue of a Secret changed by hand); Certificates of other
  issuers stay `DoesNotExist`. Not kept: Issuers, CertificateRequests, orders and
  challenges, webhooks and validation.
- Leases and every other object are stored and updated as given; no other controller
  (no scheduler, no kubelet: pods keep the status they are written with).

The k3s stand-in concatenates this file into its own program (with K3S_STANDIN set), so
it has no top-level side effects.
"""

import base64
import copy
import hashlib
import http.client
import http.server
import json
import os
import queue
import random
import re
import socket
import ssl
import string
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid

HELM_JOB_SECONDS = 3.0
CERT_MANAGER_SECONDS = 1.0
CHART_CONTENT_LIMIT = 1024 * 1024


def chart_archive(content):
    """A `chartContent` chart as helm reads it: a gzipped tar whose `<dir>/Chart.yaml` names
    the chart and its version (helm installs a local archive at the version inside it).
    (metadata, None), or (None, helm's error)."""
    import io
    import tarfile
    try:
        data = base64.b64decode(content, validate=True)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            member = next((m for m in tar.getmembers()
                           if m.isfile() and m.name.count("/") == 1 and m.name.endswith("/Chart.yaml")), None)
            if member is None:
                return None, "Error: INSTALLATION FAILED: Chart.yaml file is missing\n"
            text = tar.extractfile(member).read().decode("utf-8", "replace")
    except Exception as e:  # what helm says of an archive it cannot read
        return None, f"Error: INSTALLATION FAILED: file '/chart/chart.tgz' does not appear to be a gzipped archive; got '{type(e).__name__}'\n"
    meta = {}
    for line in text.splitlines():
        m = re.match(r"^(name|version):\s*['\"]?([^'\"#\s]+)", line)
        if m:
            meta[m.group(1)] = m.group(2)
    if "name" not in meta or "version" not in meta:
        return None, "Error: INSTALLATION FAILED: validation: chart.metadata.name and version are required\n"
    return meta, None
WATCH_HISTORY = 10000
BOOKMARK_SECONDS = 5.0


# ---------------------------------------------------------------- resources


class Resource:
    def __init__(self, group, version, plural, kind, namespaced, short=(), subresources=(), key=None):
        self.group = group
        self.version = version
        self.plural = plural
        self.kind = kind
        self.namespaced = namespaced
        self.short = list(short)
        self.subresources = subresources
        self.key = key or plural

    @property
    def api_version(self):
        return f"{self.group}/{self.version}" if self.group else self.version

    def prefix(self, namespace=None):
        base = f"/registry/{self.key}/"
        if self.namespaced and namespace:
            base += f"{namespace}/"
        return base

    def item_key(self, namespace, name):
        if self.namespaced:
            return f"/registry/{self.key}/{namespace}/{name}"
        return f"/registry/{self.key}/{name}"


RESOURCES = [
    Resource("", "v1", "nodes", "Node", False, ["no"], ("status",), key="minions"),
    Resource("", "v1", "namespaces", "Namespace", False, ["ns"], ("status",)),
    Resource("", "v1", "pods", "Pod", True, ["po"], ("status", "eviction", "log")),
    Resource("", "v1", "secrets", "Secret", True),
    Resource("", "v1", "events", "Event", True, ["ev"]),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", True),
    Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ["pdb"], ("status",)),
    Resource("batch", "v1", "jobs", "Job", True, [], ("status",)),
    Resource("apps", "v1", "daemonsets", "DaemonSet", True, ["ds"], ("status",)),
    Resource("helm.cattle.io", "v1", "helmcharts", "HelmChart", True, [], ("status",), key="helm.cattle.io/helmcharts"),
    # The kinds cert-manager's CRDs bring; the cert-manager stand-in below keeps their status.
    Resource("cert-manager.io", "v1", "clusterissuers", "ClusterIssuer", False, [], ("status",),
             key="cert-manager.io/clusterissuers"),
    Resource("cert-manager.io", "v1", "certificates", "Certificate", True, ["cert", "certs"], ("status",),
             key="cert-manager.io/certificates"),
]
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
POD_LOG_PREFIX = "/registry/standin.foundry/podlogs/"


def find_resource(group, version, plural):
    for r in RESOURCES:
        if r.group == group and r.version == version and r.plural == plural:
            return r
    return None


# ---------------------------------------------------------------- errors


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self):
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def qualified(res):
    return f"{res.plural}.{res.group}" if res.group else res.plural


def not_found(res, name):
    return ApiError(404, "NotFound", f'{qualified(res)} "{name}" not found',
                    {"name": name, "group": res.group, "kind": res.plural})


def already_exists(res, name):
    return ApiError(409, "AlreadyExists", f'{qualified(res)} "{name}" already exists',
                    {"name": name, "group": res.group, "kind": res.plural})


def conflict(res, name):
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on {qualified(res)} "{name}": the object has been '
                    "modified; please apply your changes to the latest version and try again",
                    {"name": name, "group": res.group, "kind": res.plural})


def invalid(res, name, field, detail):
    kind = f"{res.kind}.{res.group}" if res.group else res.kind
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {field}: {detail}',
                    {"name": name, "group": res.group, "kind": res.kind,
                     "causes": [{"reason": "FieldValueInvalid", "message": detail, "field": field}]})


def bad_request(message):
    return ApiError(400, "BadRequest", message)


class Gone(Exception):
    def __init__(self, requested, oldest):
        super().__init__(f"too old resource version: {requested} ({oldest})")


# ---------------------------------------------------------------- stores


class MemoryStore:
    """Keys and values in this process, with etcd's revision semantics."""

    def __init__(self):
        self._lock = threading.Condition()
        self._data = {}  # key -> (value bytes, mod_revision)
        self._rev = 1
        self._history = []  # (rev, type, key, value, prev_value)
        self._compacted = 0

    def revision(self):
        with self._lock:
            return self._rev

    def get(self, key):
        with self._lock:
            return self._data.get(key)

    def list(self, prefix):
        with self._lock:
            items = [(k, v, r) for k, (v, r) in sorted(self._data.items()) if k.startswith(prefix)]
            return items, self._rev

    def _record(self, kind, key, value, prev):
        self._rev += 1
        self._history.append((self._rev, kind, key, value, prev))
        if len(self._history) > WATCH_HISTORY:
            drop = len(self._history) - WATCH_HISTORY
            self._compacted = self._history[drop - 1][0]
            del self._history[:drop]
        self._lock.notify_all()
        return self._rev

    def create(self, key, value):
        with self._lock:
            if key in self._data:
                return None
            rev = self._record("PUT", key, value, None)
            self._data[key] = (value, rev)
            return rev

    def update(self, key, value, expected_rev):
        with self._lock:
            current = self._data.get(key)
            if current is None or current[1] != expected_rev:
                return None
            rev = self._record("PUT", key, value, current[0])
            self._data[key] = (value, rev)
            return rev

    def delete(self, key, expected_rev=None):
        with self._lock:
            current = self._data.get(key)
            if current is None or (expected_rev is not None and current[1] != expected_rev):
                return None
            rev = self._record("DELETE", key, None, current[0])
            del self._data[key]
            return current[0], rev

    def compact(self, rev):
        with self._lock:
            self._history = [h for h in self._history if h[0] > rev]
            self._compacted = max(self._compacted, rev)

    def watch(self, prefix, after_rev):
        return _MemoryWatch(self, prefix, after_rev)


class _MemoryWatch:
    def __init__(self, store, prefix, after_rev):
        self.store, self.prefix, self.pos = store, prefix, after_rev
        with store._lock:
            if after_rev < store._compacted:
                raise Gone(after_rev, store._compacted + 1)

    def next(self, timeout):
        """Events (type, key, value, prev_value, rev) after the last ones returned, [] on timeout."""
        s = self.store
        with s._lock:
            if s._rev <= self.pos:
                s._lock.wait(timeout)
            if self.pos < s._compacted:
                raise Gone(self.pos, s._compacted + 1)
            events = [(t, k, v, p, r) for (r, t, k, v, p) in s._history if r > self.pos and k.startswith(self.prefix)]
            self.pos = max(self.pos, s._rev)
            return events

    def close(self):
        pass


def _b64(text):
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def _range_end(prefix):
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return bytes(raw)


class EtcdStore:
    """Keys and values in a real etcd 3.4, through its v3 JSON gateway (grpc-gateway).
    An https endpoint takes `tls`, (CA file, client certificate file, client key file), as
    an etcd with --client-cert-auth (K3s's) wants."""

    def __init__(self, endpoint, tls=None):
        parsed = urllib.parse.urlsplit(endpoint)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"etcd endpoint {endpoint!r}: expected http(s)://HOST:PORT")
        if (parsed.scheme == "https") != (tls is not None):
            raise ValueError(f"etcd endpoint {endpoint!r}: https needs a CA, a certificate and a key, http none")
        self.host = parsed.hostname
        self.port = parsed.port or 2379
        self._ssl = None
        if tls is not None:
            ca, cert, key = tls
            self._ssl = ssl.create_default_context(cafile=ca)
            self._ssl.load_cert_chain(cert, key)
        self._local = threading.local()

    def connect(self, timeout):
        if self._ssl is None:
            return http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        return http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self._ssl)

    def _post(self, path, body, timeout=10.0):
        for attempt in range(2):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self.connect(timeout)
                self._local.conn = conn
            try:
                conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
                continue
            if resp.status != 200:
                raise ApiError(500, "InternalError", f"etcd {path}: {resp.status} {data[:200]!r}")
            return json.loads(data)
        raise AssertionError("unreachable")

    def revision(self):
        out = self._post("/v3/kv/range", {"key": _b64("/"), "count_only": True})
        return int(out["header"]["revision"])

    def get(self, key):
        out = self._post("/v3/kv/range", {"key": _b64(key)})
        kvs = out.get("kvs") or []
        if not kvs:
            return None
        return base64.b64decode(kvs[0].get("value", "")), int(kvs[0]["mod_revision"])

    def list(self, prefix):
        out = self._post("/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(_range_end(prefix))})
        items = [(base64.b64decode(kv["key"]).decode(), base64.b64decode(kv.get("value", "")), int(kv["mod_revision"]))
                 for kv in out.get("kvs") or []]
        return items, int(out["header"]["revision"])

    def _txn(self, key, mod_rev, success):
        out = self._post("/v3/kv/txn", {
            "compare": [{"target": "MOD", "key": _b64(key), "mod_revision": str(mod_rev), "result": "EQUAL"}],
            "success": [success],
        })
        if not out.get("succeeded"):
            return None
        return out

    def create(self, key, value):
        out = self._txn(key, 0, {"request_put": {"key": _b64(key), "value": _b64(value)}})
        return None if out is None else int(out["header"]["revision"])

    def update(self, key, value, expected_rev):
        out = self._txn(key, expected_rev, {"request_put": {"key": _b64(key), "value": _b64(value)}})
        return None if out is None else int(out["header"]["revision"])

    def delete(self, key, expected_rev=None):
        for _ in range(20):
            current = self.get(key)
            if current is None:
                return None
            if expected_rev is not None and current[1] != expected_rev:
                return None
            out = self._txn(key, current[1], {"request_delete_range": {"key": _b64(key)}})
            if out is not None:
                return current[0], int(out["header"]["revision"])
        raise ApiError(500, "InternalError", f"etcd: {key} kept changing during its deletion")

    def watch(self, prefix, after_rev):
        return _EtcdWatch(self, prefix, after_rev)


class _EtcdWatch:
    def __init__(self, store, prefix, after_rev):
        self.events = queue.Queue()
        self.after_rev = after_rev
        self.conn = store.connect(None)
        body = {"create_request": {"key": _b64(prefix), "range_end": _b64(_range_end(prefix)),
                                   "start_revision": str(after_rev + 1), "prev_kv": True}}
        self.conn.request("POST", "/v3/watch", json.dumps(body), {"Content-Type": "application/json"})
        self.resp = self.conn.getresponse()
        first = self._read()
        if first is None:
            self.close()
            raise ApiError(500, "InternalError", "etcd closed the watch")
        try:
            self._check(first)
        except Gone:
            self.close()
            raise
        self.events.put(first)
        threading.Thread(target=self._pump, daemon=True).start()

    def _read(self):
        line = self.resp.readline()
        if not line:
            return None
        return json.loads(line).get("result", {})

    def _check(self, result):
        if result.get("compact_revision") and int(result["compact_revision"]) > self.after_rev + 1:
            raise Gone(self.after_rev, int(result["compact_revision"]))

    def _pump(self):
        try:
            while True:
                result = self._read()
                if result is None:
                    break
                self.events.put(result)
        except (OSError, ValueError, http.client.HTTPException, ssl.SSLError):
            pass
        self.events.put(None)

    def next(self, timeout):
        out = []
        try:
            item = self.events.get(timeout=timeout)
        except queue.Empty:
            return out
        while True:
            if item is None:
                raise ApiError(500, "InternalError", "etcd closed the watch")
            self._check(item)
            for ev in item.get("events") or []:
                kv = ev.get("kv", {})
                key = base64.b64decode(kv.get("key", "")).decode()
                prev = base64.b64decode(ev["prev_kv"].get("value", "")) if ev.get("prev_kv") else None
                kind = ev.get("type", "PUT")
                value = base64.b64decode(kv.get("value", "")) if kind == "PUT" else None
                out.append((kind, key, value, prev, int(kv.get("mod_revision", 0))))
            try:
                item = self.events.get_nowait()
            except queue.Empty:
                return out

    def close(self):
        try:
            self.conn.sock and self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()


# ---------------------------------------------------------------- selectors and patches


def _split_top(text):
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def label_matcher(selector):
    tests = []
    for term in _split_top(selector or ""):
        m = re.fullmatch(r"([^\s!=]+)\s+(in|notin)\s+\((.*)\)", term)
        if m:
            values = {v.strip() for v in m.group(3).split(",")}
            key, op = m.group(1), m.group(2)
            if op == "in":
                tests.append(lambda l, k=key, vs=values: l.get(k) in vs)
            else:
                tests.append(lambda l, k=key, vs=values: l.get(k) not in vs)
            continue
        m = re.fullmatch(r"([^\s!=]+)\s*(==|=|!=)\s*(\S*)", term)
        if m:
            key, op, value = m.groups()
            if op == "!=":
                tests.append(lambda l, k=key, v=value: l.get(k) != v)
            else:
                tests.append(lambda l, k=key, v=value: l.get(k) == v)
            continue
        m = re.fullmatch(r"(!?)([^\s!=()]+)", term)
        if m:
            key = m.group(2)
            if m.group(1):
                tests.append(lambda l, k=key: k not in l)
            else:
                tests.append(lambda l, k=key: k in l)
            continue
        raise bad_request(f"unable to parse requirement: {term!r}")
    return lambda labels: all(t(labels or {}) for t in tests)


FIELDS = {
    "metadata.name": lambda o: o.get("metadata", {}).get("name", ""),
    "metadata.namespace": lambda o: o.get("metadata", {}).get("namespace", ""),
    "spec.nodeName": lambda o: (o.get("spec") or {}).get("nodeName", ""),
    "status.phase": lambda o: (o.get("status") or {}).get("phase", ""),
}


def field_matcher(selector):
    tests = []
    for term in _split_top(selector or ""):
        m = re.fullmatch(r"([^\s!=]+)\s*(==|=|!=)\s*(\S*)", term)
        if not m or m.group(1) not in FIELDS:
            raise bad_request(f'"{term}" is not a known field selector: only "metadata.name", '
                              '"metadata.namespace", "spec.nodeName", "status.phase"')
        get, op, value = FIELDS[m.group(1)], m.group(2), m.group(3)
        if op == "!=":
            tests.append(lambda o, g=get, v=value: g(o) != v)
        else:
            tests.append(lambda o, g=get, v=value: g(o) == v)
    return lambda obj: all(t(obj) for t in tests)


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue  # strategic merge directives ($patch, $retainKeys, ...)
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc, ops):
    doc = copy.deepcopy(doc)
    if not isinstance(ops, list):
        raise bad_request("a JSON patch is a list of operations")

    def walk(parts):
        node = doc
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node, parts[-1]

    def get(parts):
        node = doc
        for part in parts:
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node

    def remove(parts):
        parent, last = walk(parts)
        if isinstance(parent, list):
            return parent.pop(int(last))
        return parent.pop(last)

    def add(parts, value):
        parent, last = walk(parts)
        if isinstance(parent, list):
            parent.insert(len(parent) if last == "-" else int(last), value)
        else:
            parent[last] = value

    try:
        for op in ops:
            kind, path = op.get("op"), _pointer(op.get("path", ""))
            if kind == "add":
                add(path, copy.deepcopy(op.get("value")))
            elif kind == "remove":
                remove(path)
            elif kind == "replace":
                get(path)
                remove(path)
                add(path, copy.deepcopy(op.get("value")))
            elif kind == "test":
                if get(path) != op.get("value"):
                    raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: "
                                   f"testing value {op.get('path')} failed")
            elif kind in ("move", "copy"):
                source = _pointer(op.get("from", ""))
                value = copy.deepcopy(get(source))
                if kind == "move":
                    remove(source)
                add(path, value)
            else:
                raise bad_request(f"unknown JSON patch operation {kind!r}")
    except (KeyError, IndexError, ValueError, TypeError) as e:
        raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: {e}")
    return doc


# ---------------------------------------------------------------- server-side apply

SSA_DEPTH = 3
SSA_SKIP = {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace"),
            ("metadata", "resourceVersion"), ("metadata", "managedFields"), ("metadata", "uid"),
            ("metadata", "creationTimestamp"), ("metadata", "generation")}


def field_paths(obj, prefix=()):
    paths = set()
    if isinstance(obj, dict) and len(prefix) < SSA_DEPTH and (obj or not prefix):
        for key, value in obj.items():
            paths |= field_paths(value, prefix + (key,))
    elif prefix:
        paths.add(prefix)
    return {p for p in paths if p not in SSA_SKIP and p[:1] != ("status",)}


def get_path(obj, path):
    for part in path:
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def del_path(obj, path):
    parents = []
    for part in path[:-1]:
        if not isinstance(obj, dict) or part not in obj:
            return
        parents.append((obj, part))
        obj = obj[part]
    if isinstance(obj, dict):
        obj.pop(path[-1], None)
    for parent, part in reversed(parents):
        if parent[part] == {}:
            del parent[part]


def fields_v1(paths):
    root = {}
    for path in sorted(paths):
        node = root
        for part in path:
            node = node.setdefault(f"f:{part}", {})
    return root


def paths_of_fields_v1(fields, prefix=()):
    paths = set()
    for key, sub in (fields or {}).items():
        if not key.startswith("f:"):
            continue
        path = prefix + (key[2:],)
        if sub:
            paths |= paths_of_fields_v1(sub, path)
        else:
            paths.add(path)
    return paths


def managers(obj):
    out = []
    for entry in obj.get("metadata", {}).get("managedFields") or []:
        out.append({"manager": entry.get("manager", ""), "operation": entry.get("operation", "Update"),
                    "paths": paths_of_fields_v1(entry.get("fieldsV1")), "apiVersion": entry.get("apiVersion", "")})
    return out


def set_managers(obj, entries, now):
    obj.setdefault("metadata", {})["managedFields"] = [
        {"manager": e["manager"], "operation": e["operation"], "apiVersion": e["apiVersion"], "time": now,
         "fieldsType": "FieldsV1", "fieldsV1": fields_v1(e["paths"])}
        for e in entries if e["paths"]
    ]


def overlaps(a, b):
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def record_update(old, new, manager, api_version, now):
    """A non-apply write: the fields it changed move to `manager` (operation Update)."""
    before, after = field_paths(old or {}), field_paths(new)
    changed = {p for p in after if get_path(old or {}, p) != get_path(new, p)}
    changed |= {p for p in before - after}
    entries = managers(old or {})
    for e in entries:
        e["paths"] = {p for p in e["paths"] if not any(overlaps(p, c) for c in changed) and get_path(new, p) is not None}
    mine = next((e for e in entries if e["manager"] == manager and e["operation"] == "Update"), None)
    if mine is None:
        mine = {"manager": manager, "operation": "Update", "paths": set(), "apiVersion": api_version}
        entries.append(mine)
    mine["paths"] |= {p for p in changed if p in after}
    set_managers(new, entries, now)


def apply_patch(live, applied, manager, force, api_version, now):
    """Server-side apply of `applied` by `manager` onto `live` (None when absent)."""
    mine = field_paths(applied)
    entries = managers(live or {})
    conflicts = []
    for e in entries:
        if e["manager"] == manager and e["operation"] == "Apply":
            continue
        for p in e["paths"]:
            for q in mine:
                if overlaps(p, q) and get_path(live, q) != get_path(applied, q):
                    conflicts.append((e["manager"], e["apiVersion"], "." + ".".join(q)))
    conflicts = sorted(set(conflicts))
    if conflicts and not force:
        count = len(conflicts)
        lines = "\n".join(f'- conflict with "{m}": {f}' for m, _, f in conflicts)
        message = (f"Apply failed with {count} conflict{'s' if count > 1 else ''}: "
                   + (f'conflict with "{conflicts[0][0]}" using {conflicts[0][1]}: {conflicts[0][2]}' if count == 1 else "\n" + lines))
        raise ApiError(409, "Conflict", message, {"causes": [
            {"type": "FieldManagerConflict", "message": f'conflict with "{m}" using {v}', "field": f} for m, v, f in conflicts]})
    result = copy.deepcopy(live) if live else {}
    previous = next((e for e in entries if e["manager"] == manager and e["operation"] == "Apply"), None)
    if previous:
        others = set().union(*[e["paths"] for e in entries if e is not previous])
        for p in previous["paths"] - mine:
            if p not in others:
                del_path(result, p)
    for p in sorted(mine):
        node = result
        for part in p[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[p[-1]] = copy.deepcopy(get_path(applied, p))
    for e in entries:
        if e is not previous:
            e["paths"] = {p for p in e["paths"] if not any(overlaps(p, q) for q in mine)} if force else e["paths"]
    if previous is None:
        previous = {"manager": manager, "operation": "Apply", "apiVersion": api_version}
        entries.append(previous)
    previous["paths"] = mine
    set_managers(result, entries, now)
    return result


# ---------------------------------------------------------------- helpers


def now_rfc3339(t=None):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


def parse_time(text):
    try:
        return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    except (TypeError, ValueError):
        return time.time()


def human_age(created):
    seconds = max(0, int(time.time() - parse_time(created)))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"


def random_suffix(n=5):
    return "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(n))


def parse_values(text):
    """valuesContent (YAML, usually) as a mapping; python3-yaml when present, JSON otherwise."""
    if not text or not text.strip():
        return {}
    try:
        import yaml  # python3-yaml on the lab hosts; optional
        value = yaml.safe_load(text)
    except ImportError:
        try:
            value = json.loads(text)
        except ValueError:
            value = {m.group(1): True for m in re.finditer(r"(?m)^([A-Za-z0-9_.-]+)\s*:", text)}
    except Exception as e:  # yaml.YAMLError
        raise ValueError(f"failed to parse values: {e}")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("values are not a mapping")
    return value


# The charts the HelmChart controller knows: their allowed top-level values keys, as
# their values.schema.json files restrict them (a stand-in: the real charts' schemas are
# larger; `None` would mean no schema).
KNOWN_CHARTS = {
    "contour": {
        "version": "19.5.9", "app_version": "1.30.2",
        "keys": {"global", "kubeVersion", "nameOverride", "fullnameOverride", "namespaceOverride", "commonLabels",
                 "commonAnnotations", "extraDeploy", "clusterDomain", "diagnosticMode", "existingConfigMap",
                 "configInline", "contour", "envoy", "defaultBackend", "ingress", "rbac", "tlsExistingSecret",
                 "useCertManager", "metrics", "gatewayAPI", "crds", "customResourceDefinitions"},
    },
    "cert-manager": {
        "version": "v1.16.2", "app_version": "v1.16.2",
        "keys": {"global", "installCRDs", "crds", "replicaCount", "strategy", "podDisruptionBudget", "featureGates",
                 "maxConcurrentChallenges", "image", "clusterResourceNamespace", "namespace", "fullnameOverride",
                 "nameOverride", "serviceAccount", "automountServiceAccountToken", "enableCertificateOwnerRef",
                 "config", "dns01RecursiveNameservers", "dns01RecursiveNameserversOnly", "disableAutoApproval",
                 "approveSignerNames", "extraArgs", "extraEnv", "resources", "securityContext",
                 "containerSecurityContext", "volumes", "volumeMounts", "deploymentAnnotations", "podAnnotations",
                 "podLabels", "serviceAnnotations", "serviceLabels", "podDnsPolicy", "podDnsConfig", "hostAliases",
                 "nodeSelector", "ingressShim", "prometheus", "affinity", "tolerations", "topologySpreadConstraints",
                 "livenessProbe", "enableServiceLinks", "webhook", "cainjector", "acmesolver", "startupapicheck",
                 "extraObjects", "creator", "enabled"},
    },
    "foundry-test": {
        "version": "0.1.0", "app_version": "0.1.0",
        "keys": {"replicaCount", "message", "secretMessage", "image", "service"},
    },
}


# ---------------------------------------------------------------- the API


class KubeApi:
    def __init__(self, store, *, tokens=None, version="v1.32.4+k3s1"):
        self.store = store
        self.tokens = dict(tokens or {})
        self.version = version
        self._stop = threading.Event()
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self._ensure_namespace(ns)

    # ------------------------------------------------------------ storage of objects

    def _decode(self, value, rev):
        obj = json.loads(value)
        obj.setdefault("metadata", {})["resourceVersion"] = str(rev)
        return obj

    def _encode(self, obj):
        obj = copy.deepcopy(obj)
        obj.get("metadata", {}).pop("resourceVersion", None)
        return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()

    def _ensure_namespace(self, name):
        res = find_resource("", "v1", "namespaces")
        key = res.item_key(None, name)
        if self.store.get(key) is None:
            obj = {"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": name, "uid": str(uuid.uuid4()), "creationTimestamp": now_rfc3339(),
                                "labels": {"kubernetes.io/metadata.name": name}},
                   "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
            self.store.create(key, self._encode(obj))

    def read(self, res, namespace, name):
        got = self.store.get(res.item_key(namespace, name))
        if got is None:
            raise not_found(res, name)
        return self._decode(*got)

    def list_objects(self, res, namespace=None):
        items, rev = self.store.list(res.prefix(namespace))
        return [self._decode(v, r) for _, v, r in items], rev

    def create(self, res, namespace, obj, manager=None):
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + random_suffix()
        name = meta.get("name")
        if not name:
            raise invalid(res, "", "metadata.name", "Required value: name or generateName is required")
        if res.namespaced:
            meta["namespace"] = namespace
            ns_res = find_resource("", "v1", "namespaces")
            if self.store.get(ns_res.item_key(None, namespace)) is None:
                raise not_found(ns_res, namespace)
        else:
            meta.pop("namespace", None)
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        self._validate(res, obj)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        meta["generation"] = 1
        meta.pop("resourceVersion", None)
        meta.pop("deletionTimestamp", None)
        if manager is not None:
            record_update(None, obj, manager, res.api_version, now_rfc3339())
        if res.plural == "namespaces":
            obj.setdefault("status", {"phase": "Active"})
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        rev = self.store.create(res.item_key(namespace, name), self._encode(obj))
        if rev is None:
            raise already_exists(res, name)
        meta["resourceVersion"] = str(rev)
        return obj

    def _validate(self, res, obj):
        name = obj.get("metadata", {}).get("name", "")
        if res.plural == "helmcharts":
            content = (obj.get("spec") or {}).get("chartContent") or ""
            if len(content) > CHART_CONTENT_LIMIT:
                raise invalid(res, name, "spec.chartContent",
                              f"Too long: may not be more than {CHART_CONTENT_LIMIT} bytes")
        if len(self._encode(obj)) > 3 * 512 * 1024:
            raise ApiError(413, "RequestEntityTooLarge", "etcdserver: request is too large")

    def write(self, res, namespace, name, old, new, subresource=None, manager=None, check_rv=None):
        """Replaces `old` (as read) with `new`; `check_rv` is the version the client said it had."""
        meta = new.setdefault("metadata", {})
        old_meta = old["metadata"]
        if meta.get("name", name) != name:
            raise bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})")
        if check_rv and check_rv != old_meta["resourceVersion"]:
            raise conflict(res, name)
        if "status" in res.subresources or res.plural in ("namespaces",):
            if subresource == "status":
                status = new.get("status")
                new = copy.deepcopy(old)
                if status is None:
                    new.pop("status", None)
                else:
                    new["status"] = status
                meta = new["metadata"]
            elif "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        new["apiVersion"], new["kind"] = res.api_version, res.kind
        for keep in ("uid", "creationTimestamp", "namespace", "name", "generation", "deletionTimestamp"):
            if keep in old_meta:
                meta[keep] = old_meta[keep]
            else:
                meta.pop(keep, None)
        if new.get("spec") != old.get("spec"):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        self._validate(res, new)
        if manager is not None:
            record_update(old, new, manager, res.api_version, now_rfc3339())
        rev = self.store.update(res.item_key(namespace, name), self._encode(new), int(old_meta["resourceVersion"]))
        if rev is None:
            raise conflict(res, name)
        meta["resourceVersion"] = str(rev)
        return new

    def delete(self, res, namespace, name):
        got = self.store.delete(res.item_key(namespace, name))
        if got is None:
            raise not_found(res, name)
        obj = self._decode(got[0], got[1])
        obj["metadata"]["deletionTimestamp"] = now_rfc3339()
        if res.plural == "pods":
            self.store.delete(POD_LOG_PREFIX + f"{namespace}/{name}")
        return obj

    # ------------------------------------------------------------ HTTP

    def handle(self, request):
        """Answers one request completely (including a streaming watch)."""
        try:
            # Headers and body are separate writes: without this, Nagle and the client's
            # delayed ACK add 40 ms to every answer on a kept-alive connection.
            request.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (AttributeError, OSError):
            pass
        try:
            # The whole body first, so that an early answer leaves the connection usable.
            request.standin_body = None
            request.standin_body = self._read_body(request)
            if not self._authenticated(request):
                raise ApiError(401, "Unauthorized", "Unauthorized")
            self._route(request)
        except ApiError as e:
            self._send_json(request, e.code, e.status())
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            request.close_connection = True
        except Exception as e:  # an answer, not a dead connection, for a bug in here
            try:
                self._send_json(request, 500, ApiError(500, "InternalError", f"stand-in error: {e!r}").status())
            except OSError:
                request.close_connection = True

    def _authenticated(self, request):
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[len("Bearer "):].strip() in self.tokens
        getpeercert = getattr(request.connection, "getpeercert", None)
        return bool(getpeercert and getpeercert())

    def _send_json(self, request, code, body, content_type="application/json"):
        data = json.dumps(body).encode()
        request.send_response(code)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(data)))
        request.send_header("Audit-Id", str(uuid.uuid4()))
        request.send_header("Cache-Control", "no-cache, private")
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(data)

    def _send_text(self, request, code, text):
        data = text.encode()
        request.send_response(code)
        request.send_header("Content-Type", "text/plain")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _body(self, request):
        body = getattr(request, "standin_body", None)
        return self._read_body(request) if body is None else body

    def _read_body(self, request):
        length = int(request.headers.get("Content-Length") or 0)
        if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = b""
            while True:
                size = int(request.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    request.rfile.readline()
                    break
                raw += request.rfile.read(size)
                request.rfile.readline()
        else:
            raw = request.rfile.read(length) if length else b""
        return raw

    def _json_body(self, request, allow_yaml=False):
        raw = self._body(request)
        try:
            return json.loads(raw or b"null")
        except ValueError:
            if allow_yaml:
                try:
                    import yaml
                    return yaml.safe_load(raw)
                except Exception:
                    pass
            raise bad_request("the request body is not valid JSON")

    def _route(self, request):
        url = urllib.parse.urlsplit(request.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        method = request.command
        if parts in (["healthz"], ["livez"], ["readyz"]) or (parts[:1] in (["healthz"], ["livez"], ["readyz"])):
            return self._send_text(request, 200, "ok")
        if parts == ["version"]:
            major, minor = re.match(r"v(\d+)\.(\d+)", self.version).groups()
            return self._send_json(request, 200, {
                "major": major, "minor": minor, "gitVersion": self.version, "gitCommit": "standin",
                "gitTreeState": "clean", "buildDate": "2025-04-01T00:00:00Z", "goVersion": "go1.23.6",
                "compiler": "gc", "platform": "linux/amd64"})
        if parts == ["api"]:
            return self._send_json(request, 200, {"kind": "APIVersions", "versions": ["v1"],
                                                  "serverAddressByClientCIDRs": [
                                                      {"clientCIDR": "0.0.0.0/0", "serverAddress": request.headers.get("Host", "")}]})
        if parts == ["apis"]:
            return self._send_json(request, 200, self._group_list())
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        elif parts[:1] == ["apis"] and len(parts) == 2:
            groups = [g for g in self._group_list()["groups"] if g["name"] == parts[1]]
            if not groups:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return self._send_json(request, 200, dict(groups[0], kind="APIGroup", apiVersion="v1"))
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            listing = self._resource_list(group, version)
            if listing is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return self._send_json(request, 200, listing)
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and find_resource(group, version, rest[2]):
            namespace, rest = rest[1], rest[2:]
        res = find_resource(group, version, rest[0])
        if res is None or (namespace is not None and not res.namespaced):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if len(rest) > 3 or (sub and sub not in res.subresources):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if res.namespaced and name is not None and namespace is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not res.namespaced and res.plural != "namespaces":
            namespace = None
        if res.plural == "namespaces" and name is not None:
            namespace = None
        manager = query.get("fieldManager")
        if name is None:
            if method == "GET" and query.get("watch") in ("1", "true"):
                return self._watch(request, res, namespace, query)
            if method == "GET":
                return self._list(request, res, namespace, query)
            if method == "POST":
                body = self._json_body(request)
                if not isinstance(body, dict):
                    raise bad_request("the request body is not an object")
                if res.namespaced and namespace is None:
                    raise ApiError(404, "NotFound", "the server could not find the requested resource")
                ns_in_body = body.get("metadata", {}).get("namespace")
                if ns_in_body and ns_in_body != namespace:
                    raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
                if query.get("dryRun"):
                    return self._send_json(request, 201, body)
                return self._send_json(request, 201, self.create(res, namespace, body, manager or self._agent(request)))
            raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on the requested resource")
        if sub == "eviction":
            if method != "POST":
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            return self._evict(request, namespace, name)
        if sub == "log":
            pod = self.read(res, namespace, name)
            got = self.store.get(POD_LOG_PREFIX + f"{namespace}/{name}")
            text = got[0].decode() if got else ""
            if not text and (pod.get("status") or {}).get("phase", "Pending") == "Pending":
                raise bad_request(f'container "{self._container(pod)}" in pod "{name}" is waiting to start: ContainerCreating')
            return self._send_text(request, 200, text)
        if method == "GET":
            obj = self.read(res, namespace, name)
            if self._wants_table(request):
                return self._send_json(request, 200, self._table(res, [obj], obj["metadata"]["resourceVersion"], query))
            return self._send_json(request, 200, obj)
        if method == "DELETE":
            self._body(request)
            obj = self.delete(res, namespace, name)
            return self._send_json(request, 200, obj)
        if method == "PUT":
            body = self._json_body(request)
            if not isinstance(body, dict):
                raise bad_request("the request body is not an object")
            old = self.read(res, namespace, name)
            rv = body.get("metadata", {}).get("resourceVersion")
            return self._send_json(request, 200, self.write(res, namespace, name, old, body, sub,
                                                             manager or self._agent(request), rv))
        if method == "PATCH":
            return self._patch(request, res, namespace, name, sub, query)
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _agent(self, request):
        agent = request.headers.get("User-Agent", "unknown")
        return agent.split("/")[0] or "unknown"

    @staticmethod
    def _container(pod):
        containers = (pod.get("spec") or {}).get("containers") or [{}]
        return containers[0].get("name", "")

    def _patch(self, request, res, namespace, name, sub, query):
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
        force = query.get("force") in ("true", "1")
        if ctype == "application/apply-patch+yaml":
            manager = query.get("fieldManager")
            if not manager:
                raise bad_request("fieldManager is required for apply requests")
            applied = self._json_body(request, allow_yaml=True)
            if not isinstance(applied, dict):
                raise bad_request("the apply patch is not an object")
            if applied.get("kind") not in (None, res.kind) or applied.get("apiVersion") not in (None, res.api_version):
                raise bad_request(f"the apply patch is a {applied.get('apiVersion')} {applied.get('kind')}, "
                                  f"not a {res.api_version} {res.kind}")
            for _ in range(5):
                try:
                    live = self.read(res, namespace, name)
                except ApiError as e:
                    if e.code != 404:
                        raise
                    live = None
                merged = apply_patch(live, applied, manager, force, res.api_version, now_rfc3339())
                merged.setdefault("metadata", {})["name"] = name
                try:
                    if live is None:
                        return self._send_json(request, 201, self.create(res, namespace, merged))
                    return self._send_json(request, 200, self.write(res, namespace, name, live, merged, sub))
                except ApiError as e:
                    if e.reason not in ("Conflict", "AlreadyExists") or e.details is None or "causes" in (e.details or {}):
                        raise
            raise conflict(res, name)
        patch = self._json_body(request)
        manager = query.get("fieldManager") or self._agent(request)
        for _ in range(5):
            live = self.read(res, namespace, name)
            if ctype == "application/json-patch+json":
                new = json_patch(live, patch)
            elif ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                if not isinstance(patch, dict):
                    raise bad_request("a merge patch is an object")
                new = merge_patch(live, patch)
            else:
                raise ApiError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - '
                               f'accepted media types include: application/json-patch+json, application/merge-patch+json, '
                               f'application/apply-patch+yaml, application/strategic-merge-patch+json')
            rv = (patch.get("metadata") or {}).get("resourceVersion") if isinstance(patch, dict) else None
            try:
                return self._send_json(request, 200, self.write(res, namespace, name, live, new, sub, manager, rv))
            except ApiError as e:
                if e.reason != "Conflict" or rv:
                    raise
        raise conflict(res, name)

    # ------------------------------------------------------------ discovery

    def _group_list(self):
        groups = {}
        for r in RESOURCES:
            if r.group:
                groups.setdefault(r.group, r.version)
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
             "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v}} for g, v in groups.items()]}

    def _resource_list(self, group, version):
        found = [r for r in RESOURCES if r.group == group and r.version == version]
        if not found:
            return None
        resources = []
        for r in found:
            singular = r.kind.lower()
            resources.append({"name": r.plural, "singularName": singular, "namespaced": r.namespaced, "kind": r.kind,
                              "verbs": VERBS, **({"shortNames": r.short} if r.short else {})})
            for sub in r.subresources:
                entry = {"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced, "kind": r.kind,
                         "verbs": ["get", "patch", "update"]}
                if sub == "eviction":
                    entry.update(kind="Eviction", group="policy", version="v1", verbs=["create"])
                elif sub == "log":
                    entry.update(kind="Pod", verbs=["get"])
                resources.append(entry)
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version, "resources": resources}

    # ------------------------------------------------------------ list and watch

    def _list(self, request, res, namespace, query):
        labels = label_matcher(query.get("labelSelector"))
        fields = field_matcher(query.get("fieldSelector"))
        objects, rev = self.list_objects(res, namespace)
        objects = [o for o in objects if labels(o["metadata"].get("labels")) and fields(o)]
        if self._wants_table(request):
            return self._send_json(request, 200, self._table(res, objects, str(rev), query))
        self._send_json(request, 200, {"kind": f"{res.kind}List", "apiVersion": res.api_version,
                                       "metadata": {"resourceVersion": str(rev)}, "items": objects})

    def _watch(self, request, res, namespace, query):
        labels = label_matcher(query.get("labelSelector"))
        fields = field_matcher(query.get("fieldSelector"))
        match = lambda o: labels(o["metadata"].get("labels")) and fields(o)
        timeout = float(query.get("timeoutSeconds") or 1800)
        deadline = time.monotonic() + timeout
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        rv_text = query.get("resourceVersion") or "0"
        initial = []
        if rv_text == "0":
            initial, rev = self.list_objects(res, namespace)
        else:
            try:
                rev = int(rv_text)
            except ValueError:
                raise bad_request(f"invalid resource version: {rv_text!r}")
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Transfer-Encoding", "chunked")
        request.send_header("Cache-Control", "no-cache, private")
        request.end_headers()
        request.close_connection = True

        table = self._wants_table(request)

        def send(kind, obj):
            if table and kind in ("ADDED", "MODIFIED", "DELETED"):
                obj = self._table(res, [obj], obj["metadata"]["resourceVersion"], query)
            line = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
            request.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            request.wfile.flush()

        try:
            watch = self.store.watch(res.prefix(namespace), rev)
        except Gone as e:
            send("ERROR", ApiError(410, "Expired", str(e)).status())
            request.wfile.write(b"0\r\n\r\n")
            return
        try:
            for obj in initial:
                if match(obj):
                    send("ADDED", obj)
            last_sent = time.monotonic()
            while not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    events = watch.next(min(left, 1.0))
                except Gone as e:
                    send("ERROR", ApiError(410, "Expired", str(e)).status())
                    break
                for kind, key, value, prev, mod_rev in events:
                    if kind == "PUT":
                        obj = self._decode(value, mod_rev)
                        old = self._decode(prev, mod_rev) if prev else None
                        now_in, was_in = match(obj), old is not None and match(old)
                        if now_in:
                            send("MODIFIED" if was_in else "ADDED", obj)
                        elif was_in:
                            send("DELETED", obj)
                    else:
                        if prev is None:
                            continue
                        obj = self._decode(prev, mod_rev)
                        if match(obj):
                            send("DELETED", obj)
                    rev = mod_rev
                    last_sent = time.monotonic()
                if bookmarks and time.monotonic() - last_sent >= BOOKMARK_SECONDS:
                    send("BOOKMARK", {"kind": res.kind, "apiVersion": res.api_version,
                                      "metadata": {"resourceVersion": str(max(rev, 0))}})
                    last_sent = time.monotonic()
            request.wfile.write(b"0\r\n\r\n")
            request.wfile.flush()
        finally:
            watch.close()

    # ------------------------------------------------------------ tables

    @staticmethod
    def _wants_table(request):
        accept = request.headers.get("Accept", "")
        first = accept.split(",")[0]
        return "as=Table" in first

    def _table(self, res, objects, rev, query):
        def col(name, kind="string", description="", fmt=""):
            return {"name": name, "type": kind, "format": fmt, "description": description, "priority": 0}

        if res.plural == "nodes":
            columns = [col("Name", fmt="name"), col("Status"), col("Roles"), col("Age"), col("Version")]
            cells = [self._node_cells(o) for o in objects]
        elif res.plural == "helmcharts":
            columns = [col("Name", fmt="name"), col("Job"), col("Chart"), col("TargetNamespace"), col("Version"),
                       col("Repo"), col("HelmVersion"), col("Bootstrap"), col("Age", "date")]
            cells = []
            for o in objects:
                spec = o.get("spec") or {}
                cells.append([o["metadata"]["name"], (o.get("status") or {}).get("jobName", ""), spec.get("chart", ""),
                              spec.get("targetNamespace", ""), spec.get("version", ""), spec.get("repo", ""),
                              spec.get("helmVersion", ""), spec.get("bootstrap", ""),
                              human_age(o["metadata"].get("creationTimestamp"))])
        elif res.plural == "pods":
            columns = [col("Name", fmt="name"), col("Ready"), col("Status"), col("Restarts", "integer"), col("Age")]
            cells = []
            for o in objects:
                statuses = (o.get("status") or {}).get("containerStatuses") or []
                total = len((o.get("spec") or {}).get("containers") or []) or len(statuses)
                ready = sum(1 for s in statuses if s.get("ready"))
                cells.append([o["metadata"]["name"], f"{ready}/{total}", (o.get("status") or {}).get("phase", "Pending"),
                              sum(int(s.get("restartCount", 0)) for s in statuses),
                              human_age(o["metadata"].get("creationTimestamp"))])
        else:
            columns = [col("Name", fmt="name"), col("Age")]
            cells = [[o["metadata"]["name"], human_age(o["metadata"].get("creationTimestamp"))] for o in objects]
        include = query.get("includeObject", "Metadata")
        rows = []
        for o, c in zip(objects, cells):
            row = {"cells": c}
            if include == "Object":
                row["object"] = o
            elif include != "None":
                row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}
            rows.append(row)
        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rev},
                "columnDefinitions": columns, "rows": rows}

    @staticmethod
    def _node_cells(node):
        status = node.get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
        state = "Ready" if ready and ready.get("status") == "True" else ("NotReady" if ready else "Unknown")
        if (node.get("spec") or {}).get("unschedulable"):
            state += ",SchedulingDisabled"
        labels = node["metadata"].get("labels") or {}
        roles = sorted({k[len("node-role.kubernetes.io/"):] for k in labels if k.startswith("node-role.kubernetes.io/")}
                       | ({labels["kubernetes.io/role"]} if labels.get("kubernetes.io/role") else set()))
        roles = [r for r in roles if r]
        return [node["metadata"]["name"], state, ",".join(roles) or "<none>",
                human_age(node["metadata"].get("creationTimestamp")),
                (status.get("nodeInfo") or {}).get("kubeletVersion", "")]

    # ------------------------------------------------------------ eviction

    def _evict(self, request, namespace, name):
        self._json_body(request)
        pods = find_resource("", "v1", "pods")
        pod = self.read(pods, namespace, name)
        pdb_res = find_resource("policy", "v1", "poddisruptionbudgets")
        budgets, _ = self.list_objects(pdb_res, namespace)
        labels = pod["metadata"].get("labels") or {}
        all_pods, _ = self.list_objects(pods, namespace)
        for pdb in budgets:
            selector = (pdb.get("spec") or {}).get("selector") or {}
            if not selector_matches(selector, labels):
                continue
            matching = [p for p in all_pods if selector_matches(selector, p["metadata"].get("labels") or {})]
            expected = len(matching)
            healthy = sum(1 for p in matching if (p.get("status") or {}).get("phase") == "Running")
            spec = pdb.get("spec") or {}
            if "minAvailable" in spec:
                desired = scaled(spec["minAvailable"], expected, True)
            elif "maxUnavailable" in spec:
                desired = max(0, expected - scaled(spec["maxUnavailable"], expected, True))
            else:
                desired = expected
            pod_healthy = (pod.get("status") or {}).get("phase") == "Running"
            if pod_healthy and healthy - 1 < desired:
                pdb_name = pdb["metadata"]["name"]
                raise ApiError(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.",
                               {"causes": [{"reason": "DisruptionBudget",
                                            "message": f"The disruption budget {pdb_name} needs {desired} healthy pods "
                                                       f"and has {healthy} currently"}]})
        self.delete(pods, namespace, name)
        self._send_json(request, 201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                       "code": 201})

    # ------------------------------------------------------------ controllers

    def start_controllers(self):
        threading.Thread(target=self._helm_loop, name="helm-controller", daemon=True).start()
        threading.Thread(target=self._cert_manager_loop, name="cert-manager", daemon=True).start()

    def stop(self):
        self._stop.set()

    def _helm_loop(self):
        while not self._stop.wait(0.5):
            try:
                self.reconcile_helmcharts()
            except Exception as e:  # a controller keeps going, as the real one requeues
                print(f"helm-controller: {e!r}", file=sys.stderr, flush=True)

    def reconcile_helmcharts(self):
        charts_res = find_resource("helm.cattle.io", "v1", "helmcharts")
        jobs_res = find_resource("batch", "v1", "jobs")
        charts, _ = self.list_objects(charts_res)
        for chart in charts:
            meta = chart["metadata"]
            ns, name = meta["namespace"], meta["name"]
            job_name = f"helm-install-{name}"
            try:
                values, error = self._chart_values(chart)
            except ApiError as e:
                values, error = {}, f"Error: {e.message}"
            digest = hashlib.sha256(json.dumps([chart.get("spec"), values], sort_keys=True).encode()).hexdigest()
            try:
                job = self.read(jobs_res, ns, job_name)
            except ApiError as e:
                if e.code != 404:
                    raise
                job = None
            annotations = (job or {}).get("metadata", {}).get("annotations") or {}
            if job is None or annotations.get("helmcharts.helm.cattle.io/configHash") != f"SHA256={digest}":
                if job is not None:
                    self._delete_job(ns, job)
                self._start_job(chart, job_name, digest)
                continue
            status = job.get("status") or {}
            if status.get("succeeded") or status.get("failed"):
                continue
            started = parse_time(status.get("startTime"))
            if time.time() - started < HELM_JOB_SECONDS:
                continue
            self._finish_job(chart, job, values, error)

    def _chart_values(self, chart):
        spec = chart.get("spec") or {}
        try:
            values = parse_values(spec.get("valuesContent") or "")
        except ValueError as e:
            return {}, f"Error: {e}"
        secrets_res = find_resource("", "v1", "secrets")
        for ref in spec.get("valuesSecrets") or []:
            secret = self.read(secrets_res, chart["metadata"]["namespace"], ref.get("name", ""))
            data = secret.get("data") or {}
            for key in ref.get("keys") or sorted(data):
                if key not in data:
                    return values, f'Error: secret {ref.get("name")} has no key {key}'
                try:
                    more = parse_values(base64.b64decode(data[key]).decode())
                except ValueError as e:
                    return values, f"Error: {e}"
                values = merge_values(values, more)
        for key, value in (spec.get("set") or {}).items():
            values.setdefault(key.split(".")[0], value)
        return values, None

    def _pod_log(self, ns, pod, text):
        key = POD_LOG_PREFIX + f"{ns}/{pod}"
        for _ in range(10):  # another stand-in on the same etcd may append at the same time
            current = self.store.get(key)
            if current is None:
                done = self.store.create(key, text.encode())
            else:
                done = self.store.update(key, current[0] + text.encode(), current[1])
            if done is not None:
                return

    def _start_job(self, chart, job_name, digest):
        meta = chart["metadata"]
        ns, name = meta["namespace"], meta["name"]
        spec = chart.get("spec") or {}
        jobs_res = find_resource("batch", "v1", "jobs")
        pods_res = find_resource("", "v1", "pods")
        job_uid = None
        job = {"metadata": {"name": job_name, "namespace": ns,
                            "labels": {"helmcharts.helm.cattle.io/chart": name},
                            "annotations": {"helmcharts.helm.cattle.io/configHash": f"SHA256={digest}"},
                            "ownerReferences": [{"apiVersion": "helm.cattle.io/v1", "kind": "HelmChart", "name": name,
                                                 "uid": meta.get("uid", ""), "controller": True}]},
               "spec": {"backoffLimit": 1000, "template": {"spec": {"restartPolicy": "OnFailure", "containers": [
                   {"name": "helm", "image": "rancher/klipper-helm:v0.9.4-build20250113", "args": ["install"]}]}}},
               "status": {"active": 1, "startTime": now_rfc3339()}}
        try:
            created = self.create(jobs_res, ns, job)
            job_uid = created["metadata"]["uid"]
        except ApiError as e:
            if e.reason == "AlreadyExists":
                return  # another stand-in on the same etcd started it
            raise
        pod_name = f"{job_name}-{random_suffix()}"
        pod = {"metadata": {"name": pod_name, "namespace": ns,
                            "labels": {"job-name": job_name, "batch.kubernetes.io/job-name": job_name,
                                       "controller-uid": job_uid, "helmcharts.helm.cattle.io/chart": name},
                            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job_name,
                                                 "uid": job_uid, "controller": True, "blockOwnerDeletion": True}]},
               "spec": dict(job["spec"]["template"]["spec"]),
               "status": {"phase": "Running", "startTime": now_rfc3339(),
                          "containerStatuses": [{"name": "helm", "ready": True, "restartCount": 0}]}}
        self.create(pods_res, ns, pod)
        target = spec.get("targetNamespace") or ns
        chart_ref = spec.get("chart") or ("chart.tgz" if spec.get("chartContent") else "")
        repo = f" --repo {spec['repo']}" if spec.get("repo") else ""
        version = f" --version {spec['version']}" if spec.get("version") else ""
        self._pod_log(ns, pod_name, (
            "if [[ ${KUBERNETES_SERVICE_HOST} =~ .*:.* ]]; then\n"
            "\techo KUBERNETES_SERVICE_HOST is using IPv6\n"
            "fi\n"
            "+ [[ install != \\d\\e\\l\\e\\t\\e ]]\n"
            "+ helm_repo_init\n"
            f"+ helm_v3 install --namespace {target}{repo}{version} {name} {chart_ref} --values /config/values-10_HelmChart.yaml\n"))
        try:
            self._status_update(chart, {"jobName": job_name})
        except ApiError:
            pass

    def _status_update(self, chart, fields):
        res = find_resource("helm.cattle.io", "v1", "helmcharts")
        meta = chart["metadata"]
        live = self.read(res, meta["namespace"], meta["name"])
        status = dict(live.get("status") or {}, **fields)
        if status != live.get("status"):
            self.write(res, meta["namespace"], meta["name"], live, dict(live, status=status), "status")

    def _finish_job(self, chart, job, values, error):
        meta = chart["metadata"]
        ns, name = meta["namespace"], meta["name"]
        spec = chart.get("spec") or {}
        target = spec.get("targetNamespace") or ns
        chart_name = spec.get("chart", "")
        known = KNOWN_CHARTS.get(chart_name.split("/")[-1])
        archived = None
        if error is None and spec.get("chartContent"):
            archived, error = chart_archive(spec["chartContent"])
            if archived is not None:
                chart_name = archived["name"]
        if error is None and not spec.get("chartContent"):
            if known is None:
                error = f'Error: INSTALLATION FAILED: chart "{chart_name}" not found in {spec.get("repo") or "the"} repository'
            else:
                extra = sorted(k for k in values if k not in known["keys"])
                if extra:
                    error = ("Error: INSTALLATION FAILED: values don't meet the specifications of the schema(s) in the "
                             f"following chart(s):\n{chart_name.split('/')[-1]}:\n"
                             + "".join(f"- (root): Additional property {k} is not allowed\n" for k in extra))
        jobs_res = find_resource("batch", "v1", "jobs")
        pods_res = find_resource("", "v1", "pods")
        pods, _ = self.list_objects(pods_res, ns)
        pod = next((p for p in pods if (p["metadata"].get("labels") or {}).get("job-name") == job["metadata"]["name"]), None)
        now = now_rfc3339()
        revision = None
        if error is None:
            version = archived["version"] if archived is not None else spec.get("version")
            revision = self._release(target, name, chart_name, known, values, now, version)
            log = (f"NAME: {name}\nLAST DEPLOYED: {time.strftime('%a %b %d %H:%M:%S %Y', time.gmtime())}\n"
                   f"NAMESPACE: {target}\nSTATUS: deployed\nREVISION: {revision}\nTEST SUITE: None\n")
        else:
            log = error if error.endswith("\n") else error + "\n"
        if pod is not None:
            self._pod_log(ns, pod["metadata"]["name"], log)
            phase = "Succeeded" if error is None else "Failed"
            try:
                self.write(pods_res, ns, pod["metadata"]["name"], pod, dict(pod, status=dict(
                    pod.get("status") or {}, phase=phase,
                    containerStatuses=[{"name": "helm", "ready": False, "restartCount": 0,
                                        "state": {"terminated": {"exitCode": 0 if error is None else 1,
                                                                 "reason": "Completed" if error is None else "Error"}}}])),
                           "status")
            except ApiError:
                pass
        if error is None:
            status = dict(job.get("status") or {}, succeeded=1, completionTime=now, conditions=[
                {"type": "Complete", "status": "True", "lastProbeTime": now, "lastTransitionTime": now}])
        else:
            status = dict(job.get("status") or {}, failed=1, conditions=[
                {"type": "Failed", "status": "True", "lastProbeTime": now, "lastTransitionTime": now,
                 "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}])
        status.pop("active", None)
        try:
            self.write(jobs_res, ns, job["metadata"]["name"], job, dict(job, status=status), "status")
        except ApiError as e:
            if e.reason != "Conflict":
                raise
        failed = {"type": "Failed", "status": "False" if error is None else "True", "lastTransitionTime": now,
                  "reason": "" if error is None else "Job has failed",
                  "message": "" if error is None else "See the job's pod log for details"}
        try:
            self._status_update(chart, {"jobName": job["metadata"]["name"], "conditions": [
                {"type": "JobCreated", "status": "True", "lastTransitionTime": now, "reason": "Job created"}, failed]})
        except ApiError:
            pass

    def _release(self, target, name, chart_name, known, values, now, version=None):
        secrets_res = find_resource("", "v1", "secrets")
        self._ensure_namespace(target)
        existing, _ = self.list_objects(secrets_res, target)
        releases = [s for s in existing if (s["metadata"].get("labels") or {}).get("owner") == "helm"
                    and s["metadata"]["labels"].get("name") == name]
        revision = 1 + max([int(s["metadata"]["labels"].get("version", "0")) for s in releases] or [0])
        for old in releases:
            if old["metadata"]["labels"].get("status") == "deployed":
                labels = dict(old["metadata"]["labels"], status="superseded")
                try:
                    self.write(secrets_res, target, old["metadata"]["name"], old,
                               dict(old, metadata=dict(old["metadata"], labels=labels)))
                except ApiError:
                    pass
        release = {"name": name, "namespace": target, "version": revision,
                   "info": {"status": "deployed", "last_deployed": now, "description": "Install complete"},
                   "chart": {"metadata": {"name": chart_name.split("/")[-1],
                                          "version": version or (known or {}).get("version", "0.0.0")}},
                   "config": values}
        payload = base64.b64encode(json.dumps(release).encode()).decode()
        secret = {"metadata": {"name": f"sh.helm.release.v1.{name}.v{revision}", "namespace": target,
                               "labels": {"owner": "helm", "name": name, "status": "deployed",
                                          "version": str(revision), "modifiedAt": str(int(time.time()))}},
                  "type": "helm.sh/release.v1", "data": {"release": _b64(payload)}}
        try:
            self.create(secrets_res, target, secret)
        except ApiError as e:
            if e.reason != "AlreadyExists":
                raise
        return revision

    def _delete_job(self, ns, job):
        jobs_res = find_resource("batch", "v1", "jobs")
        pods_res = find_resource("", "v1", "pods")
        pods, _ = self.list_objects(pods_res, ns)
        for p in pods:
            if (p["metadata"].get("labels") or {}).get("job-name") == job["metadata"]["name"]:
                try:
                    self.delete(pods_res, ns, p["metadata"]["name"])
                except ApiError:
                    pass
        try:
            self.delete(jobs_res, ns, job["metadata"]["name"])
        except ApiError:
            pass


    # ------------------------------------------------------------ the cert-manager stand-in

    def _cert_manager_loop(self):
        while not self._stop.wait(CERT_MANAGER_SECONDS):
            try:
                self.reconcile_cert_manager()
            except Exception as e:  # a controller keeps going, as the real one requeues
                print(f"cert-manager: {e!r}", file=sys.stderr, flush=True)

    def cert_manager_namespace(self):
        """The namespace of cert-manager's deployed release, none while it is not deployed."""
        charts, _ = self.list_objects(find_resource("helm.cattle.io", "v1", "helmcharts"))
        secrets_res = find_resource("", "v1", "secrets")
        for chart in charts:
            spec = chart.get("spec") or {}
            if (spec.get("chart") or "").split("/")[-1] != "cert-manager":
                continue
            target = spec.get("targetNamespace") or chart["metadata"]["namespace"]
            secrets, _ = self.list_objects(secrets_res, target)
            for secret in secrets:
                labels = secret["metadata"].get("labels") or {}
                if (labels.get("owner") == "helm" and labels.get("name") == chart["metadata"]["name"]
                        and labels.get("status") == "deployed"):
                    return target
        return None

    def reconcile_cert_manager(self):
        namespace = self.cert_manager_namespace()
        if namespace is None:
            return
        issuers_res = find_resource("cert-manager.io", "v1", "clusterissuers")
        issuers, _ = self.list_objects(issuers_res)
        ready = {}
        for issuer in issuers:
            status, reason, message = self._issuer_verdict(issuer, namespace)
            ready[issuer["metadata"]["name"]] = (status == "True", issuer)
            self._set_ready(issuers_res, None, issuer, status, reason, message)
        certs_res = find_resource("cert-manager.io", "v1", "certificates")
        certs, _ = self.list_objects(certs_res)
        for cert in certs:
            self._reconcile_certificate(certs_res, cert, ready)

    def _set_ready(self, res, namespace, obj, status, reason, message):
        """`obj`'s Ready condition as cert-manager sets it: the transition time kept while
        the status does not change; nothing written when nothing changes."""
        meta = obj["metadata"]
        old = next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), {})
        condition = {"type": "Ready", "status": status, "reason": reason, "message": message,
                     "observedGeneration": meta.get("generation", 1),
                     "lastTransitionTime": old.get("lastTransitionTime") if old.get("status") == status
                     else now_rfc3339()}
        if condition == old:
            return
        others = [c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") != "Ready"]
        status_obj = dict(obj.get("status") or {}, conditions=others + [condition])
        try:
            self.write(res, namespace, meta["name"], obj, dict(obj, status=status_obj), "status")
        except ApiError as e:
            if e.reason not in ("Conflict", "NotFound"):
                raise

    def _issuer_verdict(self, issuer, namespace):
        spec = issuer.get("spec") or {}
        if "selfSigned" in spec:
            return "True", "IsReady", ""
        if "ca" in spec:
            return self._ca_verdict((spec.get("ca") or {}).get("secretName", ""), namespace)
        if "acme" in spec:
            return self._acme_verdict(spec.get("acme") or {})
        return "False", "ErrInitIssuer", "Error initializing issuer: no issuer type the cert-manager stand-in keeps"

    def _ca_verdict(self, secret_name, namespace):
        said = "Error getting keypair for CA issuer: "
        try:
            secret = self.read(find_resource("", "v1", "secrets"), namespace, secret_name)
        except ApiError as e:
            if e.code != 404:
                raise
            return "False", "ErrGetKeyPair", f'{said}secret "{secret_name}" not found'
        data = secret.get("data") or {}
        for key in ("tls.crt", "tls.key"):
            if not data.get(key):
                return "False", "ErrGetKeyPair", f"{said}no data for \"{key}\" in secret '{namespace}/{secret_name}'"
        is_ca = openssl_is_ca(base64.b64decode(data["tls.crt"]))
        if is_ca is None:
            return "False", "ErrGetKeyPair", f"{said}error decoding certificate PEM block"
        if not is_ca:
            return "False", "ErrInvalidKeyPair", f"{said}certificate is not a CA"
        return "True", "KeyPairVerified", "Signing CA verified"

    def _acme_verdict(self, acme):
        server = acme.get("server", "")
        said = "Failed to register ACME account: "
        host = urllib.parse.urlsplit(server).hostname or ""
        if host not in ("127.0.0.1", "localhost", "::1"):
            return "False", "ErrRegisterACMEAccount", (
                f'{said}Get "{server}": the cert-manager stand-in reaches no server beyond loopback')
        try:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy
            with opener.open(server, timeout=2) as answer:
                directory = json.loads(answer.read())
        except (OSError, ValueError) as e:
            return "False", "ErrRegisterACMEAccount", f'{said}Get "{server}": {e}'
        if not isinstance(directory, dict) or "newAccount" not in directory:
            return "False", "ErrRegisterACMEAccount", f"{said}{server} is no ACME directory (no newAccount)"
        return "True", "ACMEAccountRegistered", "The ACME account was registered with the ACME server"

    def _reconcile_certificate(self, res, cert, ready):
        meta, spec = cert["metadata"], cert.get("spec") or {}
        ns, secret_name = meta["namespace"], spec.get("secretName", "")
        secrets_res = find_resource("", "v1", "secrets")
        try:
            secret = self.read(secrets_res, ns, secret_name)
        except ApiError as e:
            if e.code != 404:
                raise
            secret = None
        if secret is not None and (secret.get("data") or {}).get("tls.crt") and (secret.get("data") or {}).get("tls.key"):
            self._set_ready(res, ns, cert, "True", "Ready", "Certificate is up to date and has not expired")
            return
        ref = spec.get("issuerRef") or {}
        issuer_ready, issuer = ready.get(ref.get("name"), (False, None))
        if ref.get("kind") != "ClusterIssuer" or not issuer_ready or "selfSigned" not in (issuer.get("spec") or {}):
            self._set_ready(res, ns, cert, "False", "DoesNotExist", "Issuing certificate as Secret does not exist")
            return
        crt, key = openssl_self_signed(spec.get("commonName") or meta["name"], bool(spec.get("isCA")))
        secret = {"metadata": {"name": secret_name, "namespace": ns,
                               "annotations": {"cert-manager.io/certificate-name": meta["name"],
                                               "cert-manager.io/issuer-name": ref.get("name", ""),
                                               "cert-manager.io/issuer-kind": "ClusterIssuer",
                                               "cert-manager.io/issuer-group": "cert-manager.io"}},
                  "type": "kubernetes.io/tls",
                  "data": {"tls.crt": _b64(crt), "tls.key": _b64(key), "ca.crt": _b64(crt)}}
        try:
            self.create(secrets_res, ns, secret)
        except ApiError as e:
            if e.reason != "AlreadyExists":
                raise
        self._set_ready(res, ns, cert, "True", "Ready", "Certificate is up to date and has not expired")


def openssl_is_ca(pem):
    """Whether a PEM certificate's basic constraints say CA:TRUE (the real `openssl` reads
    it); none when it is no certificate."""
    import subprocess
    try:
        done = subprocess.run(["openssl", "x509", "-noout", "-ext", "basicConstraints"], input=pem,
                              capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return b"CA:TRUE" in done.stdout


def openssl_self_signed(common_name, is_ca):
    """A self-signed certificate and its ECDSA P-256 key, PEM text, made by the real `openssl`."""
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        crt, key = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
        constraints = "critical,CA:TRUE" if is_ca else "critical,CA:FALSE"
        usage = "critical,keyCertSign,cRLSign,digitalSignature" if is_ca else "critical,digitalSignature,keyEncipherment"
        subprocess.run(["openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", key, "-out", crt, "-days", "90", "-subj", "/CN=" + common_name.replace("/", " "),
                        "-addext", "basicConstraints=" + constraints, "-addext", "keyUsage=" + usage],
                       check=True, capture_output=True, timeout=30)
        with open(crt) as c, open(key) as k:
            return c.read(), k.read()


def merge_values(base, more):
    out = dict(base)
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_values(out[key], value)
        else:
            out[key] = value
    return out


def selector_matches(selector, labels):
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True  # policy/v1: an empty selector selects every pod of the namespace


def scaled(value, total, round_up):
    if isinstance(value, str) and value.endswith("%"):
        pct = int(value[:-1])
        n = total * pct
        return (n + 99) // 100 if round_up else n // 100
    return int(value)


# ---------------------------------------------------------------- the standalone server


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api = None

    def _any(self):
        self.api.handle(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

    def log_message(self, format, *args):
        if os.environ.get("KUBE_API_STANDIN_LOG"):
            sys.stderr.write("%s %s\n" % (self.address_string(), format % args))


class _TlsServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handler, context):
        self.context = context
        super().__init__(address, handler)

    def finish_request(self, request, client_address):
        request.settimeout(30)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        tls.settimeout(None)
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass


def read_token_file(path):
    """kube-apiserver's --token-auth-file: `token,user,uid[,"group1,group2"]` per line."""
    tokens = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split(",")
            if len(fields) < 2 or not fields[0]:
                raise ValueError(f"{path}:{number}: expected token,user,uid[,groups]")
            tokens[fields[0]] = fields[1]
    return tokens


def tls_context(cert, key, client_ca):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.load_verify_locations(client_ca)
    context.verify_mode = ssl.CERT_OPTIONAL
    context.set_alpn_protocols(["http/1.1"])
    return context


def apiserver_main(argv):
    import argparse

    parser = argparse.ArgumentParser(prog="kube-api-standin",
                                     description="A stand-in for the Kubernetes API server (lab and tests only).")
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument("--tls-cert", required=True)
    parser.add_argument("--tls-key", required=True)
    parser.add_argument("--client-ca", required=True)
    parser.add_argument("--token-file")
    parser.add_argument("--store", choices=["memory", "etcd"], default="memory")
    parser.add_argument("--etcd", default="http://127.0.0.1:2379")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    try:
        tokens = read_token_file(args.token_file) if args.token_file else {}
        store = EtcdStore(args.etcd) if args.store == "etcd" else MemoryStore()
        api = KubeApi(store, tokens=tokens)
        context = tls_context(args.tls_cert, args.tls_key, args.client_ca)
        handler = type("Handler", (_Handler,), {"api": api})
        server = _TlsServer((host.strip("[]") or "127.0.0.1", int(port)), handler, context)
    except (OSError, ValueError, ssl.SSLError, ApiError) as e:
        print(f"error: kube-api-standin: {e}", file=sys.stderr)
        return 1
    api.start_controllers()
    print(f"kube-api-standin listening on {args.listen} (store: {args.store})", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        api.stop()
        server.server_close()
    return 0


if __name__ == "__main__" and not globals().get("K3S_STANDIN"):
    sys.exit(apiserver_main(sys.argv[1:]))
