"""Checks `kubectl kustomize deploy/redis-ha/k8s` (the file given) against what the Sentinel set
needs; check.sh runs it. Usage: rendered_check.py RENDERED.yaml DIR_OF_THE_OVERLAY"""
import re
import sys
from urllib.parse import parse_qs, urlsplit

import yaml

rendered, here = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
problems = []


def find(kind, name=None, prefix=None):
    for d in docs:
        n = d["metadata"]["name"]
        if d["kind"] == kind and (n == name or (prefix and n.startswith(prefix))):
            return d
    return None


for kind, name in [("StatefulSet", "redis"), ("Service", "redis"), ("Service", "redis-headless")]:
    if find(kind, name):
        problems.append(f"the single Redis's {kind}/{name} is still rendered")
if not find("ConfigMap", "redis-acl"):
    problems.append("ConfigMap/redis-acl (the ACL and start.sh) is missing")

sts = find("StatefulSet", "redis-ha")
svc = find("Service", "redis-ha")
scripts = find("ConfigMap", prefix="redis-sentinel-scripts-")
secret = find("Secret", "session-cluster")
app = find("Deployment", "app")
if not (sts and svc and scripts and secret and app):
    print("missing: StatefulSet/redis-ha, Service/redis-ha, the scripts ConfigMap, the Secret or the app")
    sys.exit(1)

spec = sts["spec"]
pods = spec["replicas"]
if pods != 3 or spec["serviceName"] != "redis-ha" or spec.get("podManagementPolicy") != "OrderedReady":
    problems.append("the StatefulSet must be 3 ordered pods governed by Service redis-ha")
if svc["spec"].get("clusterIP") != "None" or not svc["spec"].get("publishNotReadyAddresses"):
    problems.append("Service redis-ha must be headless and publish not-ready pods")
if svc["spec"]["selector"] != spec["selector"]["matchLabels"]:
    problems.append("Service redis-ha does not select the StatefulSet's pods")

for name in ("redis-node.sh", "sentinel-node.sh"):
    if scripts["data"].get(name) != open(f"{here}/{name}").read():
        problems.append(f"the ConfigMap's {name} differs from the file")

pod = spec["template"]["spec"]
volumes = {v["name"]: v for v in pod["volumes"]}
if volumes["scripts"]["configMap"]["name"] != scripts["metadata"]["name"]:
    problems.append("the scripts volume does not mount the generated ConfigMap")
secret_keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))


def check_env(who, container):
    defined = set()
    env = {}
    for e in container.get("env", []):
        for ref in re.findall(r"\$\((\w+)\)", e.get("value", "")):
            if ref not in defined:
                problems.append(f"{who}: {e['name']} uses $({ref}) before it is defined")
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref and (ref["name"] != "session-cluster" or ref["key"] not in secret_keys):
            problems.append(f"{who}: {e['name']} names a missing Secret key")
        defined.add(e["name"])
        env[e["name"]] = e.get("value")
    return env


names = [f"redis-ha-{i}.redis-ha" for i in range(pods)]
containers = {c["name"]: c for c in pod["containers"]}
if set(containers) != {"redis", "sentinel"}:
    problems.append("each pod must run a redis and a sentinel container")
for cname, c in containers.items():
    env = check_env(f"redis-ha/{cname}", c)
    if env.get("SENTINELS", "").split() != [f"{n}:26379" for n in names]:
        problems.append(f"redis-ha/{cname}: SENTINELS must list the {pods} pods' sentinels")
    if env.get("BOOTSTRAP_MASTER") != f"{names[0]}:6379" or env.get("POD_HOST") != "$(POD_NAME).redis-ha":
        problems.append(f"redis-ha/{cname}: BOOTSTRAP_MASTER or POD_HOST is wrong")
    script = c["command"][1]
    if not script.startswith("/scripts/") or script[len("/scripts/"):] not in scripts["data"]:
        problems.append(f"redis-ha/{cname}: runs {script}, which the scripts ConfigMap lacks")
    if not env.get("SENTINEL_DIR", "").startswith("/data/"):
        problems.append(f"redis-ha/{cname}: the sentinel's file must be on the data volume")

app_env = check_env("app", app["spec"]["template"]["spec"]["containers"][0])
url = urlsplit(app_env.get("REDIS_URL", ""))
sentinels = [url.netloc.split("@")[-1]] + parse_qs(url.query).get("node", [])
if url.scheme != "redis-sentinel" or sorted(sentinels) != sorted(f"{n}:26379" for n in names):
    problems.append(f"the app's REDIS_URL must name the {pods} sentinels: {app_env.get('REDIS_URL')}")
if parse_qs(url.query).get("sentinelServiceName") != ["mymaster"]:
    problems.append("the app's REDIS_URL must name the service mymaster")

policy = find("NetworkPolicy", "redis-ingress-from-app")
ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule.get("ports", [])}
peers = [f["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for rule in policy["spec"]["ingress"] for f in rule["from"]]
if not ({6379, 26379} <= ports and {"app", "redis"} <= set(peers)):
    problems.append("the network policy must let the app and the Redis pods reach 6379 and 26379")

for p in problems:
    print(p)
sys.exit(1 if problems else 0)
