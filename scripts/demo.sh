#!/usr/bin/env bash
# Palisade demo: each attack runs twice, bare and under `palisade run` with the
# demo policy, and the table shows what Palisade blocked and which layer did it.
# Loopback only: the "mining pool" and the app are listeners this script starts.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo: run as root (cgroups, BPF)" >&2; exit 1; }
BIN=${BIN:-target/debug}
PAL=$BIN/palisade
PROBE=$BIN/palisade-probe
work=$(mktemp -d /tmp/palisade-demo.XXXXXX)
chmod 755 "$work"
events=$work/events.jsonl
listeners=()
cleanup() {
  for p in "${listeners[@]}"; do kill "$p" 2>/dev/null || true; done
  "$PAL" gc --state-dir "$work/state" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

for addr in 127.0.0.2:3333 127.0.0.1:8080 127.0.0.1:8081; do
  "$PROBE" listen "$addr" >/dev/null 2>&1 &
  listeners+=($!)
done
sleep 0.2
mkdir -p "$work/etc" "$work/secrets" "$work/bin"
echo 'root:$6$demo:19000:0:99999:7:::' > "$work/etc/shadow"
echo 'root ALL=(ALL) ALL' > "$work/etc/sudoers"
echo 'token-123' > "$work/secrets/token"
cp "$PROBE" "$work/bin/app"
cp "$PROBE" "$work/suid-helper"; chmod 4755 "$work/suid-helper"

cat > "$work/policy.yaml" <<POLICY
apiVersion: palisade.dev/v1
kind: Policy
metadata: {name: demo-web}
spec:
  process:
    default: deny
    allow: [{path: $work/bin/app}, {path: $work/suid-helper}]
  file:
    rules:
      - {path: $work/etc/shadow, access: [read, write], action: deny, id: shadow, severity: 9}
      - {dir: $work/etc/, recursive: true, access: [write], action: deny, id: etc-readonly}
      - {dir: $work/secrets/, recursive: true, access: [read], action: deny, id: secrets, tags: [MITRE-T1552]}
  network:
    rawSockets: deny
    egress:
      default: deny
      allow: [{cidr: 127.0.0.1/32, ports: [8080], protocol: tcp, id: app-backend}]
  privileges:
    noNewPrivileges: true
    blockSetuid: true
    capabilities: {drop: [ALL]}
  syscalls:
    profile: runtime/default
    deny: [{name: ptrace, id: no-debugger}]
POLICY

APP=$work/bin/app
attacks=(
  "read /etc/shadow-like file|$APP read $work/etc/shadow"
  "write sudoers-like file|$APP write $work/etc/sudoers"
  "read a mounted secret|$APP read $work/secrets/token"
  "spawn a shell (not allowlisted)|$APP exec /bin/sh -c true"
  "cryptojacking: 127.0.0.2:3333|$APP connect 127.0.0.2:3333"
  "lateral movement: :8081|$APP connect 127.0.0.1:8081"
  "UDP exfiltration|$APP sendto 127.0.0.3:53"
  "raw socket|$APP raw-socket"
  "setuid-root binary as nobody|$work/suid-helper euid"
  "ptrace (debugger injection)|$APP ptrace"
  "allowed: app backend :8080|$APP connect 127.0.0.1:8080"
)

result() { if "$@" >/dev/null 2>&1; then echo works; else echo "fails($?)"; fi; }
printf '\n%-34s %-14s %-14s\n' "ATTACK" "WITHOUT" "WITH PALISADE"
printf '%-34s %-14s %-14s\n' "------" "-------" "-------------"
i=0
for row in "${attacks[@]}"; do
  name=${row%%|*}; cmd=${row#*|}
  user=()
  case $name in setuid*) user=(--user 65534);; esac
  if [ ${#user[@]} -gt 0 ]; then
    bare=$(result setpriv --reuid 65534 --regid 65534 --clear-groups $cmd)
    bare_note=$(setpriv --reuid 65534 --regid 65534 --clear-groups $cmd 2>/dev/null | tr -d '\n')
    [ "$bare_note" = "EUID 0" ] && bare="works(root)"
  else
    bare=$(result $cmd)
  fi
  i=$((i+1))
  with=$(result "$PAL" run --id "demo-$i" --policy "$work/policy.yaml" --events "$events" \
      --state-dir "$work/state" "${user[@]}" -- $cmd)
  [ "$with" = works ] || with="BLOCKED"
  printf '%-34s %-14s %-14s\n' "$name" "$bare" "$with"
done

echo
echo "Evidence (palisade events):"
"$PAL" events --events "$events"
echo
blocked=$(grep -c '"kind":"denial"' "$events" || true)
echo "$blocked denials recorded; nothing left behind:"
ls /sys/fs/bpf/palisade /sys/fs/cgroup/unified/palisade 2>/dev/null || echo "  no palisade cgroups or pins remain"
