#!/usr/bin/env python3
"""A test Kubernetes API server serving the scale subresource of apps/v1 Deployments and
coordination.k8s.io/v1 Leases (leader election).

It follows the apiserver's contract for that subresource as far as the controller's Kubernetes
actuator relies on it:

  GET   /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale   -> autoscaling/v1 Scale
  PUT   (same path), body a Scale                                  -> the updated Scale
  PATCH (same path), Content-Type application/merge-patch+json or
        application/strategic-merge-patch+json                    -> the updated Scale

  * HTTPS with the given certificate; bearer-token authentication: no or an unknown token gets
    401, the --reader-token is authenticated but may only `get` deployments/scale (403 on writes).
  * Unknown namespace or Deployment -> 404. Any write bumps the resourceVersion (one counter for
    the whole store, as etcd's revision). A write carrying a resourceVersion other than the
    current one -> 409 Conflict. PATCH with another Content-Type -> 415.
  * spec.replicas is omitted when 0 (the field is `omitempty` in the real API).
  * Errors are metav1 Status objects.
  * Leases: GET .../leases/{name} (404 when absent), POST .../leases (201; 409 AlreadyExists),
    PUT .../leases/{name} (200; 409 Conflict on a stale metadata.resourceVersion; 404 when
    absent). Writes need a writer token. The spec is stored as sent.

Test hooks, under /__fake/ (no authentication; JSON bodies):
  POST /__fake/faults    {"status": 429|500|503, "count": N, "retry_after": S (optional)}
                          the next N API requests answer `status` (with Retry-After when given).
  POST /__fake/conflicts {"count": N, "replicas": R (optional)}
                          before each of the next N writes a concurrent writer updates the
                          Deployment (bumping its resourceVersion; setting replicas when given).
  POST /__fake/set       {"namespace": ns, "name": name, "replicas": R}   an outside change.
  POST /__fake/tokens    {"tokens": [...], "reader_tokens": [...]}        replaces the tokens.
  GET  /__fake/state     {"ns/name": {"replicas": R, "resourceVersion": "..."}}
  GET  /__fake/log       [{"method", "path", "status", "token", "content_type",
                           "replicas" (written, or null), "resource_version" (sent, or null)}]
  POST /__fake/log/clear

Usage: fake_apiserver.py --cert C --key K --token T [--reader-token R]
                         --deployment ns/name=replicas ... [--port 0]
Prints the port on stdout once it accepts connections.
"""

import argparse
import json
import re
import ssl
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SCALE_PATH = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments/([^/]+)/scale$")
LEASE_PATH = re.compile(r"^/apis/coordination\.k8s\.io/v1/namespaces/([^/]+)/leases(?:/([^/]+))?$")
PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")


def status_object(code, reason, message, details=None):
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    if details is not None:
        body["details"] = details
    return body


def merge_patch(target, patch):
    """JSON merge patch (RFC 7386)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class Store:
    def __init__(self, deployments, tokens, reader_tokens):
        self.lock = threading.Lock()
        self.revision = 1000
        self.deployments = {}
        for (ns, name), replicas in deployments.items():
            self.revision += 1
            self.deployments[(ns, name)] = {
                "uid": str(uuid.uuid4()), "replicas": replicas,
                "resourceVersion": str(self.revision),
                "creationTimestamp": "2024-01-01T00:00:00Z"}
        self.tokens = set(tokens)
        self.reader_tokens = set(reader_tokens)
        self.faults = []          # [{"status", "retry_after"}], one per coming request
        self.conflicts = []       # [replicas or None], one per coming write
        self.log = []
        self.leases = {}          # (ns, name) -> Lease object

    def bump(self, dep, replicas=None):
        self.revision += 1
        dep["resourceVersion"] = str(self.revision)
        if replicas is not None:
            dep["replicas"] = replicas

    def scale(self, ns, name):
        dep = self.deployments[(ns, name)]
        spec = {}
        if dep["replicas"]:
            spec["replicas"] = dep["replicas"]
        return {
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": name, "namespace": ns, "uid": dep["uid"],
                         "resourceVersion": dep["resourceVersion"],
                         "creationTimestamp": dep["creationTimestamp"]},
            "spec": spec,
            "status": {"replicas": dep["replicas"], "selector": f"app={name}"},
        }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-apiserver"

    def setup(self):
        # The TLS handshake runs here, in the connection's own thread, so a client that rejects
        # our certificate fails only its own connection.
        self.request = self.server.tls.wrap_socket(self.request, server_side=True)
        super().setup()

    def log_message(self, fmt, *args):
        pass

    # --- plumbing ---------------------------------------------------------------------------
    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(self, code, body, extra_headers=()):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra_headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.dispatch("GET")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def do_POST(self):
        self.dispatch("POST")

    def dispatch(self, method):
        body = self.read_body()
        if self.path.startswith("/__fake/"):
            self.control(method, self.path, body)
            return
        store = self.server.store
        with store.lock:
            entry = {"method": method, "path": self.path, "status": 0, "token": self.token(),
                     "content_type": self.headers.get("Content-Type"),
                     "replicas": None, "resource_version": None}
            store.log.append(entry)
            code, reply, headers = self.api(store, method, body, entry)
            entry["status"] = code
        self.send_json(code, reply, headers)

    def token(self):
        auth = self.headers.get("Authorization") or ""
        return auth[len("Bearer "):] if auth.startswith("Bearer ") else None

    # --- the API ----------------------------------------------------------------------------
    def api(self, store, method, body, entry):
        if store.faults:
            fault = store.faults.pop(0)
            code = fault["status"]
            headers = []
            if fault.get("retry_after") is not None:
                headers.append(("Retry-After", str(fault["retry_after"])))
            reason = "TooManyRequests" if code == 429 else "InternalError"
            message = ("Too many requests, please try again later." if code == 429
                       else "Internal error occurred: injected fault")
            return code, status_object(code, reason, message), headers

        token = entry["token"]
        if token is None or (token not in store.tokens and token not in store.reader_tokens):
            return 401, status_object(401, "Unauthorized", "Unauthorized"), []

        lease = LEASE_PATH.match(self.path.split("?", 1)[0])
        if lease:
            return self.lease(store, method, body, token, lease.group(1), lease.group(2))
        match = SCALE_PATH.match(self.path.split("?", 1)[0])
        if not match or method not in ("GET", "PUT", "PATCH"):
            return 404, status_object(404, "NotFound", "the server could not find the requested resource"), []
        ns, name = match.group(1), match.group(2)
        details = {"name": name, "group": "apps", "kind": "deployments"}

        verb = {"GET": "get", "PUT": "update", "PATCH": "patch"}[method]
        if verb != "get" and token not in store.tokens:
            user = f"system:serviceaccount:{ns}:reader"
            return 403, status_object(
                403, "Forbidden",
                f'deployments.apps "{name}" is forbidden: User "{user}" cannot {verb} resource '
                f'"deployments/scale" in API group "apps" in the namespace "{ns}"', details), []

        if (ns, name) not in store.deployments:
            return 404, status_object(404, "NotFound", f'deployments.apps "{name}" not found', details), []
        dep = store.deployments[(ns, name)]
        if method == "GET":
            return 200, store.scale(ns, name), []
        return self.write(store, method, body, ns, name, dep, details, entry)

    def write(self, store, method, body, ns, name, dep, details, entry):
        if method == "PATCH":
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if content_type not in PATCH_TYPES:
                return 415, status_object(
                    415, "UnsupportedMediaType",
                    f'the body of the request was in an unknown format - accepted media types '
                    f'include: {", ".join(PATCH_TYPES)}'), []
        try:
            doc = json.loads(body or b"null")
        except ValueError as e:
            return 400, status_object(400, "BadRequest", f"error decoding the body: {e}"), []
        if not isinstance(doc, dict):
            return 400, status_object(400, "BadRequest", "the body is not a JSON object"), []

        if store.conflicts:
            store.bump(dep, store.conflicts.pop(0))   # the concurrent writer wins the race

        current = store.scale(ns, name)
        new = merge_patch(current, doc) if method == "PATCH" else doc
        meta = new.get("metadata") if isinstance(new.get("metadata"), dict) else {}
        spec = new.get("spec") if isinstance(new.get("spec"), dict) else {}
        sent_rv = doc.get("metadata", {}).get("resourceVersion") if isinstance(doc.get("metadata"), dict) else None
        entry["resource_version"] = sent_rv
        if method == "PUT":
            if new.get("kind") != "Scale" or meta.get("name") != name:
                return 400, status_object(400, "BadRequest", "the body is not the Scale of this Deployment"), []
        replicas = spec.get("replicas", 0)
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            return 422, status_object(
                422, "Invalid",
                f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: {json.dumps(replicas)}: '
                f'must be greater than or equal to 0', details), []
        rv = meta.get("resourceVersion")
        if rv and rv != dep["resourceVersion"]:
            return 409, status_object(
                409, "Conflict",
                f'Operation cannot be fulfilled on deployments.apps "{name}": the object has been '
                f'modified; please apply your changes to the latest version and try again', details), []
        entry["replicas"] = replicas
        store.bump(dep, replicas)
        return 200, store.scale(ns, name), []

    def lease(self, store, method, body, token, ns, name):
        details = {"name": name, "group": "coordination.k8s.io", "kind": "leases"}
        if method != "GET" and token not in store.tokens:
            return 403, status_object(403, "Forbidden", f'leases.coordination.k8s.io is forbidden in "{ns}"'), []
        if method == "GET" and name:
            if (ns, name) not in store.leases:
                return 404, status_object(404, "NotFound", f'leases.coordination.k8s.io "{name}" not found',
                                          details), []
            return 200, store.leases[(ns, name)], []
        try:
            doc = json.loads(body or b"null")
        except ValueError as e:
            return 400, status_object(400, "BadRequest", f"error decoding the body: {e}"), []
        if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict):
            return 400, status_object(400, "BadRequest", "the body is not a Lease"), []
        meta = doc["metadata"]
        if method == "POST" and not name:
            name = meta.get("name")
            if (ns, name) in store.leases:
                return 409, status_object(409, "AlreadyExists", f'leases.coordination.k8s.io "{name}" already exists',
                                          details), []
            code = 201
        elif method == "PUT" and name:
            if (ns, name) not in store.leases:
                return 404, status_object(404, "NotFound", f'leases.coordination.k8s.io "{name}" not found',
                                          details), []
            if meta.get("resourceVersion") != store.leases[(ns, name)]["metadata"]["resourceVersion"]:
                return 409, status_object(409, "Conflict", f'Operation cannot be fulfilled on leases.coordination.k8s.io '
                                          f'"{name}": the object has been modified', details), []
            code = 200
        else:
            return 405, status_object(405, "MethodNotAllowed", "method not allowed"), []
        store.revision += 1
        obj = {"kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
               "metadata": {"name": name, "namespace": ns, "resourceVersion": str(store.revision)},
               "spec": doc.get("spec") if isinstance(doc.get("spec"), dict) else {}}
        store.leases[(ns, name)] = obj
        return code, obj, []

    # --- test hooks ---------------------------------------------------------------------------
    def control(self, method, path, body):
        store = self.server.store
        try:
            doc = json.loads(body) if body else {}
        except ValueError:
            self.send_json(400, {"error": "bad json"})
            return
        with store.lock:
            if method == "POST" and path == "/__fake/faults":
                fault = {"status": int(doc["status"]), "retry_after": doc.get("retry_after")}
                store.faults.extend([fault] * int(doc.get("count", 1)))
            elif method == "POST" and path == "/__fake/conflicts":
                store.conflicts.extend([doc.get("replicas")] * int(doc.get("count", 1)))
            elif method == "POST" and path == "/__fake/set":
                store.bump(store.deployments[(doc["namespace"], doc["name"])], int(doc["replicas"]))
            elif method == "POST" and path == "/__fake/tokens":
                store.tokens = set(doc.get("tokens", []))
                store.reader_tokens = set(doc.get("reader_tokens", []))
            elif method == "POST" and path == "/__fake/log/clear":
                store.log = []
            elif method == "GET" and path == "/__fake/log":
                reply = list(store.log)
                self.send_json(200, reply)
                return
            elif method == "GET" and path == "/__fake/state":
                reply = {f"{ns}/{name}": {"replicas": d["replicas"], "resourceVersion": d["resourceVersion"]}
                         for (ns, name), d in store.deployments.items()}
                self.send_json(200, reply)
                return
            else:
                self.send_json(404, {"error": f"no test hook {method} {path}"})
                return
        self.send_json(200, {"ok": True})


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Clients that reject our certificate (the TLS tests) end here; not worth a traceback.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ssl.SSLError, ConnectionError, OSError)):
            return
        super().handle_error(request, client_address)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--token", action="append", default=[])
    parser.add_argument("--reader-token", action="append", default=[])
    parser.add_argument("--deployment", action="append", default=[], help="ns/name=replicas")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    deployments = {}
    for spec in args.deployment:
        key, _, replicas = spec.partition("=")
        ns, _, name = key.partition("/")
        deployments[(ns, name)] = int(replicas or 0)

    server = Server(("127.0.0.1", args.port), Handler)
    server.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.tls.load_cert_chain(args.cert, args.key)
    server.store = Store(deployments, args.token, args.reader_token)
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
