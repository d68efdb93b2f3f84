#!/bin/sh
# A stand-in for K3s's install.sh (https://get.k3s.io), used by Foundry's lab and tests
# only. It keeps the installer's contract for an air-gapped install, where the binary is
# already at /usr/local/bin/k3s:
#   INSTALL_K3S_SKIP_DOWNLOAD=true  required here: this stand-in downloads nothing
#   INSTALL_K3S_EXEC                `server`, `agent`, and flags for the unit's command
#   K3S_URL (https) with K3S_TOKEN or K3S_TOKEN_FILE: an agent (unless EXEC says server)
#   INSTALL_K3S_SKIP_ENABLE, INSTALL_K3S_SKIP_START, INSTALL_K3S_BIN_DIR,
#   INSTALL_K3S_SYSTEMD_DIR, INSTALL_K3S_NAME
# It writes k3s.service or k3s-agent.service (Type=notify, TimeoutStartSec=0,
# Restart=always) and its 0600 .env (K3S_* from the environment go there, never into the
# unit), k3s-killall.sh and k3s-uninstall.sh or k3s-agent-uninstall.sh, then reloads
# systemd, enables and restarts the unit: the restart returns when the node is ready.
# Flags given here live only in the unit, so a re-run without them loses them; flags in
# /etc/rancher/k3s/config.yaml stay. Not kept: downloads, SELinux, the kubectl/crictl/ctr
# links, OpenRC.
set -ef

info() { echo "[INFO]  $*"; }
fatal() { echo "[ERROR]  $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fatal "You need to be root to perform this install"
[ -d /run/systemd/system ] || fatal "Can not find systemd to use as a process supervisor for k3s"

BIN_DIR="${INSTALL_K3S_BIN_DIR:-/usr/local/bin}"
SYSTEMD_DIR="${INSTALL_K3S_SYSTEMD_DIR:-/etc/systemd/system}"

case "${INSTALL_K3S_SKIP_DOWNLOAD:-false}" in
  true) ;;
  *) fatal "this install.sh stand-in downloads nothing: set INSTALL_K3S_SKIP_DOWNLOAD=true with the binary at $BIN_DIR/k3s" ;;
esac
[ -x "$BIN_DIR/k3s" ] || fatal "Executable k3s binary not found at $BIN_DIR/k3s"

# The command: the first word of INSTALL_K3S_EXEC and the arguments when it is `server` or
# `agent`, else `agent` with K3S_URL and `server` without; the other words are its flags.
set -- ${INSTALL_K3S_EXEC:-} "$@"
case "${1:-}" in
  server|agent) CMD_K3S="$1"; shift ;;
  *) if [ -n "${K3S_URL:-}" ]; then CMD_K3S=agent; else CMD_K3S=server; fi ;;
esac

if [ -n "${K3S_URL:-}" ]; then
  case "$K3S_URL" in https://*) ;; *) fatal "Only https:// URLs are supported for K3S_URL (have $K3S_URL)" ;; esac
  if [ -z "${K3S_TOKEN:-}" ] && [ -z "${K3S_TOKEN_FILE:-}" ]; then
    fatal "Defaulted k3s exec command to '$CMD_K3S' since K3S_URL is defined, but K3S_TOKEN or K3S_TOKEN_FILE is not defined."
  fi
fi

if [ "$CMD_K3S" = server ]; then SYSTEM_NAME=k3s; else SYSTEM_NAME=k3s-agent; fi
[ -n "${INSTALL_K3S_NAME:-}" ] && SYSTEM_NAME="k3s-$INSTALL_K3S_NAME"
SERVICE="$SYSTEM_NAME.service"
UNIT="$SYSTEMD_DIR/$SERVICE"
ENV_FILE="$UNIT.env"
KILLALL="$BIN_DIR/k3s-killall.sh"
if [ "$CMD_K3S" = server ]; then UNINSTALL="$BIN_DIR/k3s-uninstall.sh"; else UNINSTALL="$BIN_DIR/$SYSTEM_NAME-uninstall.sh"; fi

info "Skipping k3s download and verify"
info "Creating killall script $KILLALL"
cat > "$KILLALL" <<'EOF'
#!/bin/sh
[ "$(id -u)" -eq 0 ] || exec sudo "$0" "$@"
for unit in $(systemctl list-units --all --plain --no-legend 'k3s*.service' | awk '{print $1}'); do
  systemctl stop "$unit" 2>/dev/null || true
  systemctl kill --signal=SIGKILL "$unit" 2>/dev/null || true
done
EOF
chmod 0755 "$KILLALL"

info "Creating uninstall script $UNINSTALL"
cat > "$UNINSTALL" <<EOF
#!/bin/sh
set -x
[ "\$(id -u)" -eq 0 ] || exec sudo "\$0" "\$@"
$KILLALL
systemctl disable $SYSTEM_NAME 2>/dev/null || true
systemctl reset-failed $SYSTEM_NAME 2>/dev/null || true
systemctl daemon-reload
rm -f $UNIT $ENV_FILE
remove_uninstall() { rm -f $UNINSTALL; }
trap remove_uninstall EXIT
if ls $SYSTEMD_DIR/k3s*.service >/dev/null 2>&1; then
  set +x; echo "Additional k3s services installed, skipping uninstall of k3s"; exit
fi
rm -rf /etc/rancher/k3s /run/k3s /var/lib/rancher/k3s /var/lib/kubelet
rm -f $BIN_DIR/k3s $KILLALL
EOF
chmod 0755 "$UNINSTALL"

info "env: Creating environment file $ENV_FILE"
(
  umask 0077
  env | grep -E '^(K3S|CONTAINERD)_' | grep -v '^K3S_NODE_NAME=$' > "$ENV_FILE" || true
  env | grep -Ei '^(NO|HTTP|HTTPS)_PROXY=' >> "$ENV_FILE" || true
)
chmod 0600 "$ENV_FILE"

# The unit's command: each flag on its own line, quoted as install.sh quotes them.
EXEC_LINES="$BIN_DIR/k3s \\
    $CMD_K3S \\"
for arg in "$@"; do
  quoted=$(printf '%s' "$arg" | sed "s/'/'\\\\''/g")
  EXEC_LINES="$EXEC_LINES
	'$quoted' \\"
done

info "systemd: Creating service file $UNIT"
cat > "$UNIT" <<EOF
[Unit]
Description=Lightweight Kubernetes (stand-in)
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=notify
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-$ENV_FILE
KillMode=process
Delegate=yes
User=root
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStart=$EXEC_LINES

EOF
chmod 0644 "$UNIT"

if [ "${INSTALL_K3S_SKIP_ENABLE:-false}" = true ]; then
  exit 0
fi
systemctl daemon-reload
info "systemd: Enabling $SYSTEM_NAME unit"
systemctl enable "$SERVICE" >/dev/null 2>&1
if [ "${INSTALL_K3S_SKIP_START:-false}" = true ]; then
  exit 0
fi
info "systemd: Starting $SYSTEM_NAME"
systemctl restart "$SERVICE"
