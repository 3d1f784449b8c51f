#!/usr/bin/env bash
# One real Kubernetes node on this machine (kubelet + containerd + runc, a bridge pod network),
# for the node tests and the demo. Provisioning is scripts/node-env.sh; this starts and stops.
#
#   scripts/node.sh check                    # can a node start here? says why not (exit 1)
#   scripts/node.sh up --owner PID           # cleans a previous run, pod network, containerd, images
#   scripts/node.sh join --kubeconfig FILE   # kube-scheduler, kubelet (node `localhost`), kube-proxy
#   scripts/node.sh down                     # stops and removes everything `up`/`join` made
#
# One node per machine: kubelet and containerd use fixed host paths and ports (10250, 10248, the
# `kubepods` cgroups, /var/log/pods, /run/netns), so `up` holds a lock until `down`, and refuses
# while another run holds it. A run killed half-way is cleaned up by the watcher `up` leaves (it
# runs `down` once PID is gone) and, failing that, by the next `up`.
#
# Pod network: bridge frnode0 with 10.244.0.1/24 (the pods' gateway, where the test API server
# listens), host-local addresses, no masquerading (no iptables rules of ours). Services route
# through kube-proxy (iptables mode) when it starts; `join` says when it does not.
#
# Environment: TEST_ASSET_KUBELET, TEST_ASSET_KUBE_SCHEDULER, TEST_ASSET_KUBE_PROXY (from
# scripts/node-env.sh), TEST_NODE_IMAGES (tarballs to import, `:`-separated).
set -euo pipefail

log() { printf 'node: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

state=/run/falco-responder-node
data=/var/lib/falco-responder-node
lock=/run/falco-responder-node.lock
bridge=frnode0
gateway=10.244.0.1
subnet=10.244.0.0/24
sock=$state/containerd.sock
pause_image=localhost/pause:3.4.1

# --- check ----------------------------------------------------------------------------------
# Why a node cannot start here, or nothing.
why_not() {
  [[ $(id -u) -eq 0 ]] || { echo "a node needs root (kubelet, containerd, mounts, network namespaces); running as uid $(id -u)"; return; }
  local c
  if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
    echo "this machine runs cgroup v2 only; the node is set up for cgroup v1 (cgroupfs driver); see README, A real node"
    return
  fi
  for c in cpu cpuacct memory pids devices freezer; do
    [[ -d /sys/fs/cgroup/$c ]] || { echo "no cgroup v1 '$c' hierarchy at /sys/fs/cgroup/$c (a node needs cgroups)"; return; }
  done
  [[ -w /sys/fs/cgroup/memory ]] || { echo "/sys/fs/cgroup/memory is not writable (a container without cgroup delegation?)"; return; }
  command -v containerd >/dev/null || { echo "containerd is not installed (scripts/node-env.sh installs it)"; return; }
  command -v runc >/dev/null || { echo "runc is not installed (scripts/node-env.sh installs it)"; return; }
  [[ -x /usr/lib/cni/bridge ]] || { echo "the CNI plugins are not installed (scripts/node-env.sh installs them)"; return; }
  command -v ip >/dev/null || { echo "iproute2 (ip) is not installed"; return; }
  local v
  for v in TEST_ASSET_KUBELET TEST_ASSET_KUBE_SCHEDULER; do
    [[ -x "${!v:-}" ]] || { echo "$v is not set to an executable (run under scripts/node-env.sh)"; return; }
  done
}

# --- processes ------------------------------------------------------------------------------
# start NAME BIN ARGS...: runs BIN in its own session, pid in $state/NAME.pid, log in $state/NAME.log.
start() {
  local name=$1; shift
  setsid "$@" >>"$state/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$state/$name.pid"
}

# The pid in $state/NAME.pid if that process still runs the binary it was started as.
live_pid() {
  local f=$state/$1.pid pid
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ -n $pid && -d /proc/$pid ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$state" || return 1
  echo "$pid"
}

# Whether the process started as NAME still runs (just after `start` it may not have exec'd yet).
alive() {
  local f=$state/$1.pid
  [[ -f $f && -d /proc/$(<"$f") ]]
}

# stop NAME: SIGTERM, then SIGKILL after 10 s.
stop() {
  local pid i
  pid=$(live_pid "$1") || return 0
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    [[ -d /proc/$pid ]] || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

# Every pid in the kubepods cgroups (the containers), and the shims of our containerd.
container_pids() {
  local d
  for d in /sys/fs/cgroup/pids/kubepods /sys/fs/cgroup/memory/kubepods; do
    [[ -d $d ]] && find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null
  done
  pgrep -f -- "-address $sock" 2>/dev/null || true
}

# The KUBE-* chains of the kubelet and kube-proxy, and the rules jumping to them, in every table.
clean_iptables() {
  local cmd t rule chains c
  for cmd in iptables ip6tables; do
    command -v "$cmd-save" >/dev/null || continue
    for t in filter nat mangle; do
      while read -r rule; do
        eval "$cmd -t $t ${rule/#-A/-D}" 2>/dev/null || true
      done < <("$cmd-save" -t "$t" 2>/dev/null | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j KUBE-' || true)
      chains=$("$cmd-save" -t "$t" 2>/dev/null | sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p')
      for c in $chains; do "$cmd" -t "$t" -F "$c" 2>/dev/null || true; done
      for c in $chains; do "$cmd" -t "$t" -X "$c" 2>/dev/null || true; done
    done
  done
}

# --- down -----------------------------------------------------------------------------------
down() {
  [[ -d $state || -d $data ]] || { log "nothing to stop"; return 0; }
  log "stopping the node"
  touch "$state/stopping" 2>/dev/null || true
  local name
  for name in kube-proxy kubelet kube-scheduler; do stop "$name"; done
  clean_iptables
  # The containers first (their processes live in the kubepods cgroups), then the shims, then
  # containerd: stopping containerd alone leaves both running.
  local pids i
  for ((i = 0; i < 5; i++)); do
    pids=$(container_pids | sort -u)
    [[ -n $pids ]] || break
    # shellcheck disable=SC2086 # a list of pids
    kill -9 $pids 2>/dev/null || true
    sleep 0.3
  done
  stop containerd
  # Mounts: container root filesystems, volumes, network namespaces; deepest first.
  local m
  while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done < <(awk '{print $5}' /proc/self/mountinfo \
    | grep -E "^($state|$data|/run/netns/cni-|/run/containerd/io.containerd)" | sort -r)
  local ns
  for ns in /run/netns/cni-*; do
    [[ -e $ns ]] || continue
    umount "$ns" 2>/dev/null || true
    rm -f "$ns"
  done
  # The pods' veth pairs go with their host ends (a network namespace still held elsewhere
  # would keep them otherwise).
  local link
  for link in $(ip -o link show master "$bridge" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link del "$link" 2>/dev/null || true
  done
  ip link del "$bridge" 2>/dev/null || true
  # cgroups, children before parents.
  local c
  for c in /sys/fs/cgroup/*/kubepods; do
    [[ -d $c ]] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  # Host paths the kubelet and containerd use whatever their configuration says: removed when
  # this node made them.
  local made
  for made in "$state"/created.*; do
    [[ -e $made ]] || continue
    rm -rf "$(<"$made")"
  done
  rm -rf "$data" "$state"
  local left
  left=$(for c in /sys/fs/cgroup/*/kubepods; do [[ ! -d $c ]] || echo "$c"; done)
  [[ -z $left ]] || log "warning: cgroups left: $left"
  log "stopped"
}

# --- up -------------------------------------------------------------------------------------
up() {
  local owner=
  while (($#)); do
    case $1 in
      --owner) owner=$2; shift 2 ;;
      *) die "unknown argument $1" ;;
    esac
  done
  [[ -n $owner && -d /proc/$owner ]] || die "up needs --owner PID of a live process (the node is removed when it is gone)"
  local why
  why=$(why_not)
  [[ -z $why ]] || die "$why"

  exec 9>"$lock"
  flock -n 9 || die "another node runs on this machine (lock $lock held by pid(s) $(fuser "$lock" 2>/dev/null || echo '?'))"
  if [[ -d $state || -d $data ]]; then
    log "cleaning up a previous run"
    down
  fi
  local port
  for port in 10250 10248; do
    ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || die "port $port is in use: another kubelet runs here"
  done
  mkdir -p "$state"/{cni/net.d,cni/ipam,manifests} "$data"
  local path i=0
  for path in /var/log/pods /var/log/containers /run/containerd /var/lib/kubelet /var/lib/cni /run/netns; do
    [[ -e $path ]] || echo "$path" >"$state/created.$((i++))"
  done

  # The pods' gateway exists before the first pod so the API server can listen on it.
  ip link add "$bridge" type bridge
  ip addr add "$gateway/24" dev "$bridge"
  ip link set "$bridge" up
  cat >"$state/cni/net.d/10-falco-responder.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "falco-responder-node",
  "plugins": [
    {
      "type": "bridge", "bridge": "$bridge", "isGateway": true, "isDefaultGateway": true, "ipMasq": false,
      "hairpinMode": true,
      "ipam": { "type": "host-local", "ranges": [[{ "subnet": "$subnet", "gateway": "$gateway" }]],
                "dataDir": "$state/cni/ipam" }
    }
  ]
}
EOF

  # restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE, and runc fails every sandbox
  # when it may not lower oom_score_adj.
  cat >"$state/containerd.toml" <<EOF
version = 2
root = "$data/containerd"
state = "$state/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$data/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_image"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$state/cni/net.d"
EOF
  start containerd containerd --config "$state/containerd.toml"
  local i
  for ((i = 0; i < 300; i++)); do
    [[ -S $sock ]] && ctr --address "$sock" version >/dev/null 2>&1 && break
    alive containerd || { tail -n 20 "$state/containerd.log" >&2; die "containerd exited"; }
    sleep 0.1
  done
  [[ -S $sock ]] || { tail -n 20 "$state/containerd.log" >&2; die "containerd did not listen on $sock"; }

  local images tar
  IFS=: read -r -a images <<<"${TEST_NODE_IMAGES:-}"
  for tar in "${images[@]}"; do
    [[ -n $tar ]] || continue
    ctr --address "$sock" -n k8s.io images import --all-platforms "$tar" >/dev/null \
      || die "importing $tar failed"
  done

  # The watcher: `down` once the owner is gone (it keeps the lock until then).
  nohup bash -c '
    owner=$1; state=$2; self=$3
    trap "" INT HUP TERM
    while kill -0 "$owner" 2>/dev/null && [ -d "$state" ] && [ ! -e "$state/stopping" ]; do sleep 1; done
    [ -e "$state/stopping" ] || exec "$self" down
  ' watcher "$owner" "$state" "$(realpath "${BASH_SOURCE[0]}")" >/dev/null 2>&1 &
  echo $! >"$state/watcher.pid"
  log "containerd up, images imported, pod network $subnet on $bridge"
}

# --- join -----------------------------------------------------------------------------------
join() {
  local kubeconfig=
  while (($#)); do
    case $1 in
      --kubeconfig) kubeconfig=$2; shift 2 ;;
      *) die "unknown argument $1" ;;
    esac
  done
  [[ -f $kubeconfig ]] || die "join needs --kubeconfig FILE"
  alive containerd || die "containerd is not running: run up first"
  cp "$kubeconfig" "$state/kubeconfig"
  kubeconfig=$state/kubeconfig

  start kube-scheduler "$TEST_ASSET_KUBE_SCHEDULER" --kubeconfig="$kubeconfig" --leader-elect=false \
    --port=0 --secure-port=0 --v=1

  # Evictions and image GC off in practice: a test machine's disk may be nearly full.
  cat >"$state/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: { enabled: true }
  webhook: { enabled: false }
authorization: { mode: AlwaysAllow }
cgroupDriver: cgroupfs
failSwapOn: false
staticPodPath: $state/manifests
fileCheckFrequency: 2s
syncFrequency: 10s
evictionHard: { memory.available: "1Mi", nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%" }
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
EOF
  # Node name `localhost`: the API server dials the kubelet by the node's Hostname address
  # first, and the kubelet refuses a loopback --node-ip.
  start kubelet "$TEST_ASSET_KUBELET" --config="$state/kubelet.yaml" --kubeconfig="$kubeconfig" \
    --container-runtime=remote --container-runtime-endpoint="unix://$sock" \
    --hostname-override=localhost --root-dir="$data/kubelet" --cert-dir="$state/pki" \
    --pod-infra-container-image="$pause_image" --v=1

  if [[ -x "${TEST_ASSET_KUBE_PROXY:-}" ]] && command -v iptables >/dev/null; then
    touch "$state/kube-proxy.used"
    start kube-proxy "$TEST_ASSET_KUBE_PROXY" --kubeconfig="$kubeconfig" --hostname-override=localhost \
      --proxy-mode=iptables --cluster-cidr=10.244.0.0/16 --conntrack-max-per-core=0 \
      --healthz-bind-address=127.0.0.1:10256 --metrics-bind-address=127.0.0.1:10249 --v=1
  else
    log "no kube-proxy (binary or iptables missing): Service ClusterIPs do not route"
  fi

  local i
  for ((i = 0; i < 600; i++)); do
    (exec 3<>/dev/tcp/127.0.0.1/10248) 2>/dev/null && break
    alive kubelet || { tail -n 30 "$state/kubelet.log" >&2; die "kubelet exited"; }
    sleep 0.1
  done
  alive kubelet || { tail -n 30 "$state/kubelet.log" >&2; die "kubelet exited"; }
  for name in kube-scheduler kube-proxy; do
    [[ -f $state/$name.pid ]] || continue
    alive "$name" || { tail -n 30 "$state/$name.log" >&2; die "$name exited"; }
  done
  log "kubelet, kube-scheduler$([[ -f $state/kube-proxy.used ]] && echo ', kube-proxy') started"
}

case "${1:-}" in
  check) why=$(why_not); [[ -z $why ]] || { echo "$why"; exit 1; } ;;
  up) shift; up "$@" ;;
  join) shift; join "$@" ;;
  down)
    exec 9>"$lock"
    # The watcher holds the lock while the node runs; `down` may still stop it.
    down
    ;;
  *) die "usage: $0 check | up --owner PID | join --kubeconfig FILE | down" ;;
esac
