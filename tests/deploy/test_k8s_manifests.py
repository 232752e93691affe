"""Checks of the Kubernetes deployment (deploy/k8s) as kustomize renders it, and of the Grafana
dashboard and tools/dashboard_queries.py.

The manifests are rendered with `kubectl kustomize` (the kubectl on PATH, or $TANDEM_KUBECTL) and
turned into JSON by `kubectl annotate --local -o json` (offline; it only removes an annotation no
object has), so the test needs no PyYAML. Without kubectl the rendering tests are skipped, unless
TANDEM_REQUIRE_E2E=1, where a missing kubectl is a failure. Tests that need promtool (Debian's
`prometheus` package) follow the same rule.

What is checked is what an operator would hit on a cluster: a probe on a port the container does
not declare, a worker killed before its drain finishes, a PodDisruptionBudget or Service that
selects nothing, a controller Role wider than it needs or bound to the wrong account, a pod
Prometheus does not scrape, a dashboard panel without a query, a server left on its loopback
default, a pod without the cluster token (or a token on a command line), and NetworkPolicies
that select nothing, block tandem's own traffic or open a worker's gRPC port to more than the
router and its KV peers.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir))
K8S_DIR = os.path.join(ROOT, "deploy", "k8s")
DASHBOARD = os.path.join(K8S_DIR, "grafana", "tandem-dashboard.json")
QUERIES_TOOL = os.path.join(ROOT, "tools", "dashboard_queries.py")
REQUIRE = os.environ.get("TANDEM_REQUIRE_E2E", "0") == "1"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_COMPONENT = "app.kubernetes.io/component"
TANDEM_COMPONENTS = ("router", "prefill", "decode", "controller")
WORKER_ROLES = ("prefill", "decode")
# Fields kubectl 1.20's kustomize (v2.0.3) understands, of those tandem may use.
OLD_KUSTOMIZE_FIELDS = {"apiVersion", "kind", "resources", "namespace", "commonLabels", "configMapGenerator",
                        "generatorOptions", "images", "patchesStrategicMerge"}


def need_tool(name, env=None):
    """Path of a tool, or a skip (a failure under TANDEM_REQUIRE_E2E=1) when it is missing."""
    path = os.environ.get(env) if env else None
    path = path or shutil.which(name)
    if not path:
        message = f"{name} not found on PATH; these checks need it (scripts/setup.sh installs it)"
        if REQUIRE:
            pytest.fail(f"TANDEM_REQUIRE_E2E=1 but {message}")
        pytest.skip(message)
    return path


def run(cmd, stdin=None):
    env = dict(os.environ, KUBECONFIG=os.devnull)  # offline: never talk to a cluster
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}"
    return proc.stdout


def split_json_stream(text):
    """Parses a stream of JSON documents one after another (kubectl prints one per object)."""
    decoder, pos, docs = json.JSONDecoder(), 0, []
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return docs
        doc, pos = decoder.raw_decode(text, pos)
        docs.extend(doc.get("items", []) if doc.get("kind") == "List" else [doc])


def yaml_objects_to_json(kubectl, yaml_text):
    """Kubernetes objects in YAML -> dicts, through kubectl (no PyYAML needed)."""
    out = run([kubectl, "annotate", "--local", "-o", "json", "-f", "-", "tandem.test/none-"], stdin=yaml_text)
    return split_json_stream(out)


def yaml_document_to_json(kubectl, yaml_text):
    """Any YAML document -> its value, by wrapping it in an object kubectl can read."""
    wrapped = "apiVersion: tandem.test/v1\nkind: Document\nmetadata:\n  name: doc\nspec:\n" + "".join(
        "  " + line + "\n" for line in yaml_text.splitlines())
    return yaml_objects_to_json(kubectl, wrapped)[0]["spec"]


# --- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def kubectl():
    return need_tool("kubectl", env="TANDEM_KUBECTL")


@pytest.fixture(scope="session")
def objects(kubectl):
    rendered = run([kubectl, "kustomize", K8S_DIR])
    objs = yaml_objects_to_json(kubectl, rendered)
    assert objs, "kustomize rendered nothing"
    return objs


@pytest.fixture(scope="session")
def dashboard():
    with open(DASHBOARD, encoding="utf-8") as f:
        return json.load(f)


def of_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def named(objs, kind, name):
    found = [o for o in of_kind(objs, kind) if o["metadata"]["name"] == name]
    assert found, f"no {kind} named {name}"
    return found[0]


def labels(obj):
    return obj["metadata"].get("labels") or {}


def pod_labels(deployment):
    return deployment["spec"]["template"]["metadata"].get("labels") or {}


def selects(selector, pod_label_map):
    """matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist) against pod labels."""
    if not selector:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if pod_label_map.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {"In": key in pod_label_map and pod_label_map[key] in values,
              "NotIn": pod_label_map.get(key) not in values,
              "Exists": key in pod_label_map,
              "DoesNotExist": key not in pod_label_map}[op]
        if not ok:
            return False
    return True


def workloads(objs):
    """What runs pods: Deployments, and the routers' StatefulSet."""
    return [o for o in objs if o["kind"] in ("Deployment", "StatefulSet")]


def deployment_of(objs, component):
    found = [d for d in workloads(objs) if pod_labels(d).get(LABEL_COMPONENT) == component]
    assert len(found) == 1, f"expected one Deployment or StatefulSet for component={component}, found {len(found)}"
    return found[0]


def router_names(objs, port_flag):
    """Each router replica by its stable name (StatefulSet pod . headless Service), at one of its ports."""
    routers = deployment_of(objs, "router")
    port = flag(the_tandem_container(routers)["args"], port_flag)
    return [f"{routers['metadata']['name']}-{i}.{routers['spec']['serviceName']}:{port}"
            for i in range(routers["spec"]["replicas"])]


def containers(deployment):
    return deployment["spec"]["template"]["spec"]["containers"]


def flag(args, name):
    """Value of --name=value or --name value in a container's args, or None."""
    for i, arg in enumerate(args):
        if arg == f"--{name}" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def port_number(container, port):
    """A probe's or Service's target port (name or number) -> the container's port number, or None."""
    for p in container.get("ports") or []:
        if port == p.get("name") or str(port) == str(p["containerPort"]):
            return p["containerPort"]
    return None


def the_tandem_container(deployment):
    found = [c for c in containers(deployment) if c["image"].split(":")[0].split("/")[-1] == "tandem"]
    assert len(found) == 1, f"{deployment['metadata']['name']}: expected one tandem container"
    return found[0]


# --- kustomization: renders with old and new kustomize ---------------------------------------------

def test_kustomization_uses_only_fields_old_kustomize_knows(kubectl):
    with open(os.path.join(K8S_DIR, "kustomization.yaml"), encoding="utf-8") as f:
        kustomization = yaml_document_to_json(kubectl, f.read())
    unknown = set(kustomization) - OLD_KUSTOMIZE_FIELDS
    assert not unknown, f"kubectl 1.20's kustomize v2.0.3 does not know {sorted(unknown)}"
    assert "commonLabels" not in kustomization, "labels go in each object: commonLabels also rewrites selectors"


def test_every_object_is_labelled_and_namespaced(objects):
    for obj in objects:
        what = f"{obj['kind']}/{obj['metadata']['name']}"
        lab = labels(obj)
        assert lab.get(LABEL_PART_OF) == "tandem", f"{what}: {LABEL_PART_OF} must be tandem"
        assert lab.get(LABEL_NAME), f"{what}: no {LABEL_NAME}"
        assert lab.get(LABEL_COMPONENT), f"{what}: no {LABEL_COMPONENT}"
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "tandem", f"{what}: not in namespace tandem"
    for component in TANDEM_COMPONENTS:
        d = deployment_of(objects, component)
        for lab in (labels(d), pod_labels(d)):
            assert lab.get(LABEL_COMPONENT) == component and lab.get(LABEL_PART_OF) == "tandem"


def test_nothing_cluster_scoped_but_the_namespace(objects):
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}, "RBAC must stay namespaced"


def test_images_name_no_registry_host(objects):
    for d in workloads(objects):
        for c in containers(d):
            first = c["image"].split("/")[0]
            assert "/" not in c["image"] or not ("." in first or ":" in first or first == "localhost"), \
                f"{d['metadata']['name']}: image {c['image']} names a registry host"
            assert c.get("imagePullPolicy") == "IfNotPresent", f"{d['metadata']['name']}/{c['name']}"
    for component in TANDEM_COMPONENTS:
        assert the_tandem_container(deployment_of(objects, component))["image"].startswith("tandem:")


# --- probes, ports, args --------------------------------------------------------------------------

def test_every_container_has_probes_on_a_declared_port(objects):
    for d in workloads(objects):
        for c in containers(d):
            what = f"{d['metadata']['name']}/{c['name']}"
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = c.get(kind)
                assert probe, f"{what}: no {kind}"
                handler = probe.get("httpGet") or probe.get("tcpSocket") or probe.get("grpc")
                assert handler, f"{what}: {kind} has no httpGet/tcpSocket/grpc"
                assert port_number(c, handler["port"]) is not None, \
                    f"{what}: {kind} uses port {handler['port']}, which the container does not declare"


def test_tandem_probes_hit_healthz_and_readyz_on_the_http_port(objects):
    for component in TANDEM_COMPONENTS:
        c = the_tandem_container(deployment_of(objects, component))
        http_port = int(flag(c["args"], "http-port"))
        for kind, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = c[kind]["httpGet"]
            assert get["path"] == path, f"{component}: {kind} path {get['path']}"
            assert port_number(c, get["port"]) == http_port, f"{component}: {kind} not on --http-port"
        startup = c["startupProbe"]
        assert port_number(c, startup["httpGet"]["port"]) == http_port
        # Worker and router start-up includes loading (maybe downloading) the model.
        if component != "controller":
            budget = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
            assert budget >= 600, f"{component}: startup probe allows only {budget} s for the model load"


def test_args_refer_only_to_defined_variables(objects):
    config_maps = {cm["metadata"]["name"]: cm.get("data") or {} for cm in of_kind(objects, "ConfigMap")}
    for d in workloads(objects):
        for c in containers(d):
            defined = {e["name"] for e in c.get("env") or []}
            for source in c.get("envFrom") or []:
                ref = source.get("configMapRef")
                assert ref and ref["name"] in config_maps, f"{d['metadata']['name']}: envFrom {source}"
                defined |= set(config_maps[ref["name"]])
            for arg in (c.get("command") or []) + (c.get("args") or []):
                for var in re.findall(r"\$\((\w+)\)", arg):
                    assert var in defined, f"{d['metadata']['name']}/{c['name']}: $({var}) is not defined"


def field_ref(container, var):
    for e in container.get("env") or []:
        if e["name"] == var:
            return ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
    return None


def test_router_service_selects_the_router_and_exposes_http_and_grpc(objects):
    service = named(objects, "Service", "tandem-router")
    selector = service["spec"]["selector"]
    assert selector.get(LABEL_COMPONENT) == "router"
    matching = [d for d in workloads(objects) if selects({"matchLabels": selector}, pod_labels(d))]
    assert [d["metadata"]["name"] for d in matching] == [deployment_of(objects, "router")["metadata"]["name"]]
    router = the_tandem_container(matching[0])
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["http"]["port"] == 8000 and ports["grpc"]["port"] == 50051
    assert port_number(router, ports["http"]["targetPort"]) == int(flag(router["args"], "http-port"))
    assert port_number(router, ports["grpc"]["targetPort"]) == int(flag(router["args"], "grpc-port"))
    # Clients reach only a router that is ready (one that has workers).
    assert not service["spec"].get("publishNotReadyAddresses")


def test_two_routers_each_named_through_a_headless_service(objects):
    routers = deployment_of(objects, "router")
    assert routers["kind"] == "StatefulSet" and routers["spec"]["replicas"] >= 2
    assert routers["spec"].get("podManagementPolicy") == "Parallel"
    peers = named(objects, "Service", routers["spec"]["serviceName"])
    assert peers["spec"].get("clusterIP") == "None", "pod names resolve only through a headless Service"
    assert selects({"matchLabels": peers["spec"]["selector"]}, pod_labels(routers))
    # Workers register through these names before a router is ready (it is ready once they have).
    assert peers["spec"].get("publishNotReadyAddresses") is True
    router = the_tandem_container(routers)
    ports = {p["name"]: p for p in peers["spec"]["ports"]}
    assert port_number(router, ports["internal"]["targetPort"]) == int(flag(router["args"], "internal-port"))
    assert port_number(router, ports["http"]["targetPort"]) == int(flag(router["args"], "http-port"))
    pdb = [b for b in of_kind(objects, "PodDisruptionBudget") if selects(b["spec"]["selector"], pod_labels(routers))]
    assert len(pdb) == 1 and pdb[0]["spec"].get("maxUnavailable") == 1, "a node drain could take both routers"


@pytest.mark.parametrize("role", WORKER_ROLES)
def test_workers_register_with_every_router_and_advertise_the_pod_ip(objects, role):
    c = the_tandem_container(deployment_of(objects, role))
    args = c["args"]
    assert args[0] == "worker" and flag(args, "role") == role
    # Every router replica, by name: a router a worker does not register with gets no work.
    assert flag(args, "router").split(",") == router_names(objects, "internal-port")
    assert flag(args, "host") == "$(POD_IP)" and field_ref(c, "POD_IP") == "status.podIP"
    assert port_number(c, int(flag(args, "grpc-port"))) is not None, "worker gRPC port not declared"


@pytest.mark.parametrize("role", WORKER_ROLES)
def test_workers_drain_before_they_are_killed(objects, role):
    d = deployment_of(objects, role)
    c = the_tandem_container(d)
    command = c["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:3] == ["tandem", "drain", "--worker"], command
    assert command[3] == f"127.0.0.1:{flag(c['args'], 'grpc-port')}", "drain must reach this worker's gRPC port"
    drain_timeout = float(flag(command, "timeout-s"))
    # After preStop, SIGTERM starts the worker's own drain (--drain-seconds); both fit in the grace.
    sigterm_drain = float(flag(c["args"], "drain-seconds") or 30)
    grace = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > drain_timeout + sigterm_drain, \
        f"{role}: grace {grace} s <= drain {drain_timeout} s + SIGTERM drain {sigterm_drain} s"


@pytest.mark.parametrize("role", WORKER_ROLES)
def test_workers_request_one_gpu(objects, role):
    resources = the_tandem_container(deployment_of(objects, role))["resources"]
    assert str(resources["requests"]["nvidia.com/gpu"]) == "1"
    assert str(resources["limits"]["nvidia.com/gpu"]) == "1"


@pytest.mark.parametrize("role", WORKER_ROLES)
def test_worker_replicas_are_left_to_the_controller(objects, role):
    # Re-applying the manifests must not reset what the controller has scaled to.
    assert "replicas" not in deployment_of(objects, role)["spec"]


def test_pod_disruption_budgets_select_existing_pods(objects):
    pdbs = of_kind(objects, "PodDisruptionBudget")
    covered = set()
    for pdb in pdbs:
        matching = [d for d in workloads(objects) if selects(pdb["spec"]["selector"], pod_labels(d))]
        assert len(matching) == 1, f"PDB {pdb['metadata']['name']} selects {len(matching)} Deployments"
        covered.add(pod_labels(matching[0])[LABEL_COMPONENT])
        spec = pdb["spec"]
        assert ("minAvailable" in spec) != ("maxUnavailable" in spec)
    assert set(WORKER_ROLES) <= covered, f"no PodDisruptionBudget for {set(WORKER_ROLES) - covered}"


def help_flags(tandem, command):
    proc = subprocess.run([tandem, command, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"tandem {command} --help failed: {proc.stderr}"
    return set(re.findall(r"^\s+--([a-z0-9-]+)", proc.stdout + proc.stderr, re.MULTILINE))


def used_flags(args):
    return {re.match(r"--([a-z0-9-]+)", a).group(1) for a in args if a.startswith("--")}


def test_every_flag_in_the_manifests_exists(objects):
    """Each --flag the containers and the drain hook pass is one the built tandem knows."""
    tandem = os.environ.get("TANDEM_BIN")
    if not tandem:
        pytest.skip("TANDEM_BIN is not set (ctest sets it to the built tandem)")
    for component in TANDEM_COMPONENTS:
        c = the_tandem_container(deployment_of(objects, component))
        command = c["args"][0]
        unknown = used_flags(c["args"][1:]) - help_flags(tandem, command)
        assert not unknown, f"{component}: tandem {command} has no flags {sorted(unknown)}"
        pre_stop = ((c.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command")
        if pre_stop:
            unknown = used_flags(pre_stop[2:]) - help_flags(tandem, pre_stop[1])
            assert not unknown, f"{component} preStop: tandem {pre_stop[1]} has no flags {sorted(unknown)}"


# --- internal-plane security: listen address and the cluster token ---------------------------------

TOKEN_SECRET = "tandem-cluster-token"
TOKEN_ENV = "TANDEM_CLUSTER_TOKEN_FILE"


def test_tandem_servers_listen_on_the_pod_ip(objects):
    """The router and workers bind 127.0.0.1 unless told otherwise: in a pod nothing could reach
    them (registration, the router's calls to workers, probes, scrapes would all fail)."""
    for component in TANDEM_COMPONENTS:
        c = the_tandem_container(deployment_of(objects, component))
        serves_grpc = flag(c["args"], "grpc-port") is not None and c["args"][0] != "controller"
        if serves_grpc or component == "controller":
            assert flag(c["args"], "bind") == "0.0.0.0", \
                f"{component}: needs --bind=0.0.0.0 (the default is loopback, unreachable from other pods)"


def env_value(container, name):
    for e in container.get("env") or []:
        if e["name"] == name:
            return e
    return None


def token_volume(deployment, container):
    """(volume, mount, file name inside it) of the volume TANDEM_CLUSTER_TOKEN_FILE points into."""
    name = deployment["metadata"]["name"]
    entry = env_value(container, TOKEN_ENV)
    assert entry and "value" in entry, f"{name}: no {TOKEN_ENV} with a plain path value"
    path = entry["value"]
    mounts = [m for m in container.get("volumeMounts") or []
              if path.startswith(m["mountPath"].rstrip("/") + "/")]
    assert len(mounts) == 1, f"{name}: {TOKEN_ENV}={path} is not inside exactly one mounted volume"
    mount = mounts[0]
    assert mount.get("readOnly") is True, f"{name}: the token volume must be mounted read-only"
    assert "subPath" not in mount, f"{name}: a subPath mount never sees a rotated Secret"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"].get("volumes") or []}
    volume = volumes[mount["name"]]
    return volume, mount, path[len(mount["mountPath"].rstrip("/")) + 1:]


def test_tandem_containers_read_the_cluster_token_from_the_secret(objects):
    for component in TANDEM_COMPONENTS:
        d = deployment_of(objects, component)
        c = the_tandem_container(d)
        volume, _, file_name = token_volume(d, c)
        secret = volume.get("secret")
        assert secret and secret["secretName"] == TOKEN_SECRET, \
            f"{component}: {TOKEN_ENV} must point into a volume of the Secret {TOKEN_SECRET}"
        assert not secret.get("optional"), f"{component}: without the token the process refuses to start"
        items = secret.get("items")
        if items:
            matching = [i for i in items if i["path"] == file_name]
            assert len(matching) == 1 and matching[0]["key"] == "token", \
                f"{component}: {file_name} is not the Secret's key 'token'"
            mode = matching[0].get("mode", secret.get("defaultMode", 0o644))
        else:
            assert file_name == "token", f"{component}: the Secret's key is 'token', not {file_name}"
            mode = secret.get("defaultMode", 0o644)
        assert mode & 0o007 == 0, f"{component}: the token file is world-readable (mode {oct(mode)})"
        # Readable by the process whatever UID the image runs as: group-readable with an fsGroup,
        # or owner-readable when the pod runs as root.
        pod_security = d["spec"]["template"]["spec"].get("securityContext") or {}
        run_as = (c.get("securityContext") or {}).get("runAsUser", pod_security.get("runAsUser"))
        readable = (pod_security.get("fsGroup") is not None and mode & 0o040) or (run_as == 0 and mode & 0o400)
        assert readable, f"{component}: the process may not be able to read the token (mode {oct(mode)}, " \
                         f"fsGroup {pod_security.get('fsGroup')}, runAsUser {run_as})"


def test_no_token_on_a_command_line_or_in_the_manifests(objects):
    assert not of_kind(objects, "Secret"), "the operator creates the Secrets; no value is committed"
    for d in workloads(objects):
        for c in containers(d):
            what = f"{d['metadata']['name']}/{c['name']}"
            pre_stop = ((c.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command") or []
            for arg in (c.get("command") or []) + (c.get("args") or []) + pre_stop:
                # --cluster-token-file would be harmless, but the manifests use the environment.
                assert not arg.startswith("--cluster-token"), f"{what}: {arg}"
                assert "insecure-no-cluster-auth" not in arg, f"{what}: the internal plane must stay authenticated"
                assert not re.search(r"[0-9a-fA-F]{32,}", arg), f"{what}: an argument looks like a secret: {arg}"
            for e in c.get("env") or []:
                assert not (e["name"] in ("TANDEM_CLUSTER_TOKEN", "TANDEM_API_KEY") and "value" in e), \
                    f"{what}: {e['name']} must come from a Secret"


def test_only_tandem_components_mount_the_cluster_token(objects):
    for d in workloads(objects):
        mounts = [v for v in d["spec"]["template"]["spec"].get("volumes") or []
                  if (v.get("secret") or {}).get("secretName") == TOKEN_SECRET]
        if pod_labels(d).get(LABEL_COMPONENT) not in TANDEM_COMPONENTS:
            assert not mounts, f"{d['metadata']['name']} has no use for the cluster token"


# --- controller RBAC --------------------------------------------------------------------------------

# The actuator reads the scale subresource and writes it with PATCH only; leader election reads,
# creates and updates its Lease.
ALLOWED = ({("apps", "deployments/scale", v) for v in ("get", "patch")}
           | {("apps", "deployments", v) for v in ("get", "list", "watch")}
           | {("", "pods", v) for v in ("get", "list", "watch")}
           | {("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")})
REQUIRED = ALLOWED


def rule_triples(role):
    triples = set()
    for rule in role.get("rules") or []:
        assert not rule.get("nonResourceURLs"), "no non-resource URLs"
        for g in rule.get("apiGroups") or []:
            for r in rule.get("resources") or []:
                for v in rule.get("verbs") or []:
                    assert "*" not in (g, r, v), f"wildcard in {rule}"
                    triples.add((g, r, v))
    return triples


def controller_account(objects):
    d = deployment_of(objects, "controller")
    account = d["spec"]["template"]["spec"].get("serviceAccountName")
    assert account and account != "default", "the controller needs its own ServiceAccount"
    named(objects, "ServiceAccount", account)
    return account


def test_controller_role_is_least_privilege(objects):
    account = controller_account(objects)
    bindings = [b for b in of_kind(objects, "RoleBinding")
                if any(s["kind"] == "ServiceAccount" and s["name"] == account
                       and s.get("namespace", b["metadata"]["namespace"]) == b["metadata"]["namespace"]
                       for s in b["subjects"])]
    assert len(bindings) == 1, f"expected one RoleBinding for {account}"
    ref = bindings[0]["roleRef"]
    assert ref["kind"] == "Role" and ref["apiGroup"] == "rbac.authorization.k8s.io"
    role = named(objects, "Role", ref["name"])
    triples = rule_triples(role)
    assert triples <= ALLOWED, f"more than the controller needs: {sorted(triples - ALLOWED)}"
    assert REQUIRED <= triples, f"missing: {sorted(REQUIRED - triples)}"
    # If the scale rule names Deployments, they are the ones the controller is told to scale.
    c = the_tandem_container(deployment_of(objects, "controller"))
    targets = {flag(c["args"], "prefill-deployment"), flag(c["args"], "decode-deployment")}
    for rule in role["rules"]:
        if rule.get("resourceNames") and "deployments/scale" in rule["resources"]:
            assert targets <= set(rule["resourceNames"]), f"{targets} not in {rule['resourceNames']}"


def test_controller_replicas_elect_one_leader_through_their_own_lease(objects):
    d = deployment_of(objects, "controller")
    c = the_tandem_container(d)
    replicas = d["spec"].get("replicas", 1)
    # More than one controller without leader election would fight over the replica counts.
    assert replicas == 1 or "--leader-elect" in c["args"], "several controllers need --leader-elect"
    assert replicas >= 2, "a second replica takes over when the leader dies"
    lease = flag(c["args"], "lease-name")
    role = named(objects, "Role", "tandem-controller")
    named_rules = [r for r in role["rules"] if "leases" in r["resources"] and r.get("resourceNames")]
    assert named_rules and all(r["resourceNames"] == [lease] for r in named_rules), "get/update only its own Lease"
    assert field_ref(c, "POD_NAME") == "metadata.name", "each replica names itself in the Lease"


def test_controller_scales_the_worker_deployments_of_its_namespace(objects):
    c = the_tandem_container(deployment_of(objects, "controller"))
    args = c["args"]
    assert args[0] == "controller" and flag(args, "actuator") == "kubernetes"
    namespace = flag(args, "namespace")
    assert namespace == "tandem" or (namespace == "$(POD_NAMESPACE)"
                                     and field_ref(c, "POD_NAMESPACE") == "metadata.namespace")
    for role in WORKER_ROLES:
        assert flag(args, f"{role}-deployment") == deployment_of(objects, role)["metadata"]["name"]
    # The admin API of any router (each knows every worker); every router's /metrics.
    routers = deployment_of(objects, "router")
    internal = flag(the_tandem_container(routers)["args"], "internal-port")
    assert flag(args, "router") == f"{routers['spec']['serviceName']}:{internal}"
    assert flag(args, "router-http").split(",") == router_names(objects, "http-port")
    assert port_number(c, int(flag(args, "http-port"))) is not None


# --- Prometheus ---------------------------------------------------------------------------------------

def sanitize(name):
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def discovered_targets(pod_meta, namespace, pod_ip="10.1.2.3"):
    """The targets Prometheus's kubernetes_sd (role: pod) makes of one pod: one per container port."""
    common = {"__meta_kubernetes_namespace": namespace, "__meta_kubernetes_pod_name": "pod-0",
              "__meta_kubernetes_pod_ip": pod_ip, "__meta_kubernetes_pod_phase": "Running",
              "__meta_kubernetes_pod_ready": "true", "__scheme__": "http", "__metrics_path__": "/metrics",
              "job": "x"}
    for k, v in (pod_meta["metadata"].get("labels") or {}).items():
        common[f"__meta_kubernetes_pod_label_{sanitize(k)}"] = v
        common[f"__meta_kubernetes_pod_labelpresent_{sanitize(k)}"] = "true"
    for k, v in (pod_meta["metadata"].get("annotations") or {}).items():
        common[f"__meta_kubernetes_pod_annotation_{sanitize(k)}"] = v
        common[f"__meta_kubernetes_pod_annotationpresent_{sanitize(k)}"] = "true"
    targets = []
    for c in pod_meta["spec"]["containers"]:
        for p in c.get("ports") or [{}]:
            t = dict(common, __address__=f"{pod_ip}:{p['containerPort']}" if p else pod_ip,
                     __meta_kubernetes_pod_container_name=c["name"])
            if p:
                t["__meta_kubernetes_pod_container_port_number"] = str(p["containerPort"])
                t["__meta_kubernetes_pod_container_port_name"] = p.get("name", "")
            targets.append(t)
    return targets


def go_expand(template, match):
    return re.sub(r"\$\{(\w+)\}|\$(\w+)",
                  lambda m: (match.group(int(m.group(1) or m.group(2))) or "")
                  if (m.group(1) or m.group(2)).isdigit() else "", template)


def relabel(target, rules):
    """Prometheus relabelling (the actions the tandem config uses); None when the target is dropped."""
    t = dict(target)
    for rule in rules:
        action = rule.get("action", "replace")
        regex = re.compile(rule.get("regex", "(.*)"))
        value = rule.get("separator", ";").join(t.get(s, "") for s in rule.get("source_labels") or [])
        if action == "keep" and not regex.fullmatch(value):
            return None
        if action == "drop" and regex.fullmatch(value):
            return None
        if action == "replace":
            m = regex.fullmatch(value)
            if m:
                result = go_expand(rule.get("replacement", "$1"), m)
                if result:
                    t[rule["target_label"]] = result
                else:
                    t.pop(rule["target_label"], None)
        assert action in ("keep", "drop", "replace"), f"the test does not model action {action}"
    return {k: v for k, v in t.items() if not k.startswith("__meta_")}


def prometheus_config(kubectl, objects):
    cms = [cm for cm in of_kind(objects, "ConfigMap") if "prometheus.yml" in (cm.get("data") or {})]
    assert len(cms) == 1, "expected one ConfigMap with prometheus.yml"
    return cms[0], yaml_document_to_json(kubectl, cms[0]["data"]["prometheus.yml"])


def test_prometheus_scrapes_every_tandem_pod_on_its_metrics_port(kubectl, objects):
    _, config = prometheus_config(kubectl, objects)
    jobs = [j for j in config["scrape_configs"]
            if any(sd.get("role") == "pod" for sd in j.get("kubernetes_sd_configs") or [])]
    assert len(jobs) == 1, "expected one scrape job with kubernetes_sd pod discovery"
    job = jobs[0]
    for sd in job["kubernetes_sd_configs"]:
        ns = sd.get("namespaces") or {}
        assert ns.get("own_namespace") is True or ns.get("names") == ["tandem"], \
            "pod discovery must stay in tandem's namespace (the RBAC is namespaced)"
    for component in TANDEM_COMPONENTS:
        d = deployment_of(objects, component)
        template = d["spec"]["template"]
        annotations = template["metadata"].get("annotations") or {}
        assert annotations.get("prometheus.io/scrape") == "true", f"{component}: not annotated for scraping"
        kept = [relabel(t, job.get("relabel_configs") or []) for t in discovered_targets(template, "tandem")]
        kept = {json.dumps(t, sort_keys=True): t for t in kept if t is not None}
        assert len(kept) == 1, f"{component}: {len(kept)} distinct scrape targets: {list(kept)}"
        target = next(iter(kept.values()))
        c = the_tandem_container(d)
        assert target["__address__"] == f"10.1.2.3:{flag(c['args'], 'http-port')}", \
            f"{component}: scraped at {target['__address__']}, metrics are on --http-port"
        assert target["__metrics_path__"] == "/metrics"
        assert target["component"] == component


def test_prometheus_config_and_rbac_fit_together(kubectl, objects):
    cm, _ = prometheus_config(kubectl, objects)
    users = [d for d in workloads(objects)
             if any((v.get("configMap") or {}).get("name") == cm["metadata"]["name"]
                    for v in d["spec"]["template"]["spec"].get("volumes") or [])]
    assert len(users) == 1, "expected one Prometheus Deployment mounting the scrape config"
    account = users[0]["spec"]["template"]["spec"].get("serviceAccountName")
    assert account and account != "default"
    binding = [b for b in of_kind(objects, "RoleBinding")
               if any(s["kind"] == "ServiceAccount" and s["name"] == account for s in b["subjects"])]
    assert len(binding) == 1 and binding[0]["roleRef"]["kind"] == "Role"
    triples = rule_triples(named(objects, "Role", binding[0]["roleRef"]["name"]))
    assert {("", "pods", v) for v in ("get", "list", "watch")} <= triples
    assert all(r in ("pods",) for _, r, _ in triples), f"Prometheus needs pods only: {triples}"


# --- NetworkPolicies ----------------------------------------------------------------------------------

# Sources and destinations the checks model: every Deployment's pods in tandem's namespace, a pod
# in another namespace, and a client outside the cluster.
OTHER_NAMESPACE = {"name": "elsewhere", "labels": {"kubernetes.io/metadata.name": "elsewhere"}}
OUTSIDE = "outside"


def namespace_labels(objects, name):
    if name == OTHER_NAMESPACE["name"]:
        return OTHER_NAMESPACE["labels"]
    ns = named(objects, "Namespace", name)
    return dict(labels(ns), **{"kubernetes.io/metadata.name": name})


def endpoints(objects):
    """Name -> (namespace, pod labels, container ports) of everything that may open a connection."""
    eps = {}
    for d in workloads(objects):
        ports = [p for c in containers(d) for p in c.get("ports") or []]
        eps[pod_labels(d).get(LABEL_COMPONENT) if pod_labels(d).get(LABEL_NAME) == "tandem"
            else pod_labels(d).get(LABEL_NAME)] = (d["metadata"]["namespace"], pod_labels(d), ports)
    eps["other-namespace"] = (OTHER_NAMESPACE["name"], {"app": "client"}, [])
    eps[OUTSIDE] = (None, None, [])
    return eps


def policies_selecting(objects, namespace, pod_label_map, policy_type):
    out = []
    for np in of_kind(objects, "NetworkPolicy"):
        spec = np["spec"]
        types = spec.get("policyTypes") or (["Ingress", "Egress"] if "egress" in spec else ["Ingress"])
        if np["metadata"]["namespace"] == namespace and policy_type in types \
                and (spec["podSelector"] == {} or selects(spec["podSelector"], pod_label_map)):
            out.append(np)
    return out


def peer_matches(objects, peer, policy_namespace, endpoint):
    namespace, pod_label_map, _ = endpoint
    if "ipBlock" in peer:
        return True  # conservatively: an IP block may cover anything
    if namespace is None:
        return False  # pod and namespace selectors never match a source outside the cluster
    ns_selector = peer.get("namespaceSelector")
    if ns_selector is None:
        in_namespace = namespace == policy_namespace
    else:
        in_namespace = ns_selector == {} or selects(ns_selector, namespace_labels(objects, namespace))
    pod_selector = peer.get("podSelector")
    return in_namespace and (pod_selector is None or pod_selector == {} or selects(pod_selector, pod_label_map))


def port_matches(rule_ports, port, protocol, container_ports):
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        if "port" not in p:
            return True
        number = p["port"]
        if isinstance(number, str):  # a named port of the selected pod
            named_ports = [cp["containerPort"] for cp in container_ports if cp.get("name") == number]
            number = named_ports[0] if named_ports else None
        if number is not None and number <= port <= p.get("endPort", number):
            return True
    return False


def allowed(objects, source, destination, port, protocol="TCP"):
    """Whether `source` may open a connection to `destination`:port under the policies."""
    eps = endpoints(objects)
    src, dst = eps[source], eps[destination]

    def side(endpoint, peer_endpoint, policy_type, rules_key, peers_key):
        namespace, pod_label_map, ports = endpoint
        if namespace is None:
            return True  # no policy governs a client outside the cluster
        selecting = policies_selecting(objects, namespace, pod_label_map, policy_type)
        if not selecting:
            return True
        target_ports = ports if policy_type == "Ingress" else peer_endpoint[2]
        return any(port_matches(rule.get("ports"), port, protocol, target_ports)
                   and (not rule.get(peers_key)
                        or any(peer_matches(objects, peer, np["metadata"]["namespace"], peer_endpoint)
                               for peer in rule[peers_key]))
                   for np in selecting for rule in np["spec"].get(rules_key) or [])

    return side(dst, src, "Ingress", "ingress", "from") and side(src, dst, "Egress", "egress", "to")


def reachers(objects, destination, port):
    return {s for s in endpoints(objects) if s != destination and allowed(objects, s, destination, port)}


def test_a_default_deny_ingress_policy_covers_every_tandem_pod(objects):
    deny = [np for np in of_kind(objects, "NetworkPolicy")
            if "Ingress" in (np["spec"].get("policyTypes") or []) and not np["spec"].get("ingress")]
    assert deny, "no default-deny ingress NetworkPolicy"
    for component in TANDEM_COMPONENTS + ("prometheus",):
        namespace, pod_label_map, _ = endpoints(objects)[component]
        assert any(np["metadata"]["namespace"] == namespace
                   and (np["spec"]["podSelector"] == {} or selects(np["spec"]["podSelector"], pod_label_map))
                   for np in deny), f"{component}: not covered by the default-deny policy"


def test_network_policies_select_existing_pods_and_declared_ports(objects):
    pods = [(d["metadata"]["namespace"], pod_labels(d), [p for c in containers(d) for p in c.get("ports") or []])
            for d in workloads(objects)]
    for np in of_kind(objects, "NetworkPolicy"):
        name, spec = np["metadata"]["name"], np["spec"]
        assert "policyTypes" in spec, f"{name}: say policyTypes explicitly"
        selected = [p for p in pods if p[0] == np["metadata"]["namespace"]
                    and (spec["podSelector"] == {} or selects(spec["podSelector"], p[1]))]
        assert selected, f"{name}: its podSelector selects no pod"
        for rule in spec.get("ingress") or []:
            for peer in rule.get("from") or []:
                if "podSelector" in peer and peer["podSelector"] and "namespaceSelector" not in peer:
                    assert any(p[0] == np["metadata"]["namespace"] and selects(peer["podSelector"], p[1])
                               for p in pods), f"{name}: a `from` podSelector selects no pod: {peer}"
            for port in rule.get("ports") or []:
                if "port" in port:
                    assert all(any(port["port"] in (cp["containerPort"], cp.get("name")) for cp in p[2])
                               for p in selected), f"{name}: port {port['port']} is not declared by every selected pod"


@pytest.mark.parametrize("role", WORKER_ROLES)
def test_worker_grpc_port_is_reachable_only_from_the_router_and_kv_peers(objects, role):
    grpc_port = int(flag(the_tandem_container(deployment_of(objects, role))["args"], "grpc-port"))
    peer = {"prefill": "decode", "decode": "prefill"}[role]
    # The router calls the Worker service. The peer role is there only because KV transfer (UCX)
    # needs every TCP port between prefill and decode pods; the cluster token still guards 50052.
    assert reachers(objects, role, grpc_port) == {"router", peer}


def test_internal_plane_connections_are_allowed(objects):
    def port_of(component, name):
        return int(flag(the_tandem_container(deployment_of(objects, component))["args"], name))
    router_internal, router_http = port_of("router", "internal-port"), port_of("router", "http-port")
    controller_http = port_of("controller", "http-port")
    for role in WORKER_ROLES:
        assert allowed(objects, role, "router", router_internal), f"{role} workers cannot register"
        worker_http = port_of(role, "http-port")
        assert allowed(objects, "prometheus", role, worker_http), f"Prometheus cannot scrape {role}"
        assert allowed(objects, "controller", role, worker_http), f"the controller cannot scrape {role}"
        kv_peer = {"prefill": "decode", "decode": "prefill"}[role]  # all TCP, for UCX
        assert reachers(objects, role, worker_http) == {"prometheus", "controller", kv_peer}, f"{role} /metrics"
    assert allowed(objects, "controller", "router", router_internal), "the controller cannot reach the admin API"
    # Only they: clients (in or outside the namespace) never reach the internal port.
    assert reachers(objects, "router", router_internal) == {"prefill", "decode", "controller"}
    assert allowed(objects, "controller", "router", router_http), "the controller cannot scrape the router"
    assert allowed(objects, "prometheus", "router", router_http), "Prometheus cannot scrape the router"
    assert reachers(objects, "controller", controller_http) == {"prometheus"}
    assert allowed(objects, "controller", "prometheus", 9090), "--source=prometheus cannot query Prometheus"
    # KV transfer: UCX listens on ephemeral ports, and the decode worker answers on its own endpoint.
    for port in (1024, 40000, 60999):
        assert allowed(objects, "prefill", "decode", port) and allowed(objects, "decode", "prefill", port)


def test_router_public_api_is_open_to_clients(objects):
    c = the_tandem_container(deployment_of(objects, "router"))
    for name in ("http-port", "grpc-port"):
        port = int(flag(c["args"], name))
        for client in ("other-namespace", OUTSIDE):
            assert allowed(objects, client, "router", port), f"clients in {client} cannot reach {port}"
    for client in ("other-namespace", OUTSIDE):
        assert not allowed(objects, client, "router", int(flag(c["args"], "internal-port"))), \
            f"the router's internal port is reachable from {client}"
    # Nothing else is open to clients outside the namespace.
    for component in WORKER_ROLES + ("controller",):
        _, _, ports = endpoints(objects)[component]
        for p in ports:
            assert not allowed(objects, "other-namespace", component, p["containerPort"]), \
                f"{component}:{p['containerPort']} is reachable from another namespace"


# --- Grafana dashboard ---------------------------------------------------------------------------------

def data_panels(dashboard):
    def walk(panels):
        for p in panels:
            yield p
            yield from walk(p.get("panels") or [])
    return [p for p in walk(dashboard["panels"]) if p.get("type") != "row"]


def all_exprs(dashboard):
    return [t["expr"] for p in data_panels(dashboard) for t in p.get("targets") or [] if t.get("expr")]


def test_dashboard_configmap_ships_the_dashboard(objects, dashboard):
    cms = [cm for cm in of_kind(objects, "ConfigMap") if labels(cm).get("grafana_dashboard") == "1"]
    assert len(cms) == 1, "expected one ConfigMap labelled grafana_dashboard=1"
    data = cms[0]["data"]
    assert list(data) == ["tandem-dashboard.json"]
    assert json.loads(data["tandem-dashboard.json"]) == dashboard


def test_every_dashboard_panel_has_a_query(dashboard):
    panels = data_panels(dashboard)
    assert panels
    titles = [p.get("title") for p in panels]
    assert all(titles) and len(set(titles)) == len(titles), f"panel titles must be unique: {titles}"
    for p in panels:
        assert [t for t in p.get("targets") or [] if (t.get("expr") or "").strip()], f"{p['title']}: no query"


def test_dashboard_uses_its_datasource_variable(dashboard):
    variables = dashboard["templating"]["list"]
    ds = [v for v in variables if v.get("type") == "datasource"]
    assert ds and ds[0]["name"] == "datasource" and ds[0]["query"] == "prometheus"
    for p in data_panels(dashboard):
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        for t in p["targets"]:
            assert t.get("datasource", p["datasource"])["uid"] == "${datasource}", p["title"]


def test_dashboard_queries_use_rate_interval_and_no_kubernetes_labels(dashboard):
    for expr in all_exprs(dashboard):
        for window in re.findall(r"\[([^\]]*)\]", expr):
            assert window == "$__rate_interval", f"range [{window}] in {expr}"
        # The same dashboard serves a local Prometheus with static targets: no pod/namespace.
        assert not re.search(r"\b(pod|namespace)\s*(=|!=|=~|!~)", expr), expr
        assert not re.search(r"\b(by|without)\s*\([^)]*\b(pod|namespace)\b", expr), expr


def test_dashboard_covers_what_operators_watch(dashboard):
    text = "\n".join(all_exprs(dashboard))
    for metric in ("tandem_router_ttft_seconds_bucket", "tandem_router_itl_seconds_bucket",
                   "tandem_router_requests_total", "tandem_controller_desired_instances",
                   "tandem_controller_actual_instances", "tandem_router_workers", "tandem_worker_kv_blocks",
                   "tandem_worker_queued_prefill_tokens", "kv_transfer_bytes_total",
                   "tandem_controller_decisions_total", "tandem_controller_traffic_class",
                   'tandem_controller_slo_seconds{slo="ttft"}', 'tandem_controller_slo_seconds{slo="itl"}'):
        assert metric in text, f"no panel shows {metric}"


# --- tools/dashboard_queries.py -----------------------------------------------------------------------

def dashboard_queries(*args):
    proc = subprocess.run([sys.executable, QUERIES_TOOL, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def test_dashboard_queries_lists_every_panel_with_variables_resolved(dashboard):
    queries = dashboard_queries("--window", "2m")
    by_panel = {}
    for q in queries:
        assert set(q) == {"panel", "expr"}
        by_panel.setdefault(q["panel"], []).append(q["expr"])
    for p in data_panels(dashboard):
        assert by_panel.get(p["title"]), f"no query listed for panel {p['title']}"
    assert len(queries) == len(all_exprs(dashboard))
    for q in queries:
        assert "$" not in q["expr"] and "[[" not in q["expr"], q
        for window in re.findall(r"\[([^\]]*)\]", q["expr"]):
            assert window == "2m", q


def test_dashboard_queries_are_valid_promql(tmp_path):
    promtool = need_tool("promtool")
    rules = [{"record": f"tandem:dashboard_query_{i}", "expr": q["expr"]}
             for i, q in enumerate(dashboard_queries())]
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))  # JSON is YAML
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dashboard_queries_refuses_an_unresolvable_variable(tmp_path):
    board = {"panels": [{"type": "timeseries", "title": "x", "targets": [{"expr": "up{job=\"$job\"}"}]}],
             "templating": {"list": []}}
    path = tmp_path / "d.json"
    path.write_text(json.dumps(board))
    proc = subprocess.run([sys.executable, QUERIES_TOOL, "--dashboard", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "job" in proc.stderr
    out = subprocess.run([sys.executable, QUERIES_TOOL, "--dashboard", str(path), "--var", "job=router"],
                         capture_output=True, text=True, timeout=60)
    assert json.loads(out.stdout) == {"panel": "x", "expr": 'up{job="router"}'}
