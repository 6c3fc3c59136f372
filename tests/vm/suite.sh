#!/bin/sh
# The BPF LSM suite, run as root inside the test guest by tests/vm/init.
# Each attack first works without a policy, then fails under `palisade run`
# with the policy, and the event proving the bpf-lsm layer refused it is in
# the log. Prints PASS/FAIL lines and a closing "VM-SUITE: N passed, N failed".
P=/usr/bin/palisade-probe
export PALISADE_LOG=warn
pass=0
fail=0
W=/tmp/work
mkdir -p $W/bin $W/etc $W/ev $W/pol

ok() { echo "PASS $1"; pass=$((pass + 1)); }
bad() {
	echo "FAIL $1: $2"
	fail=$((fail + 1))
	[ -n "$id" ] && [ -f "$W/ev/$id.jsonl" ] && tail -4 "$W/ev/$id.jsonl" | sed 's/^/DEBUG events: /'
}

# check NAME CONDITION-COMMAND...: PASS when the command succeeds.
check() {
	name=$1
	shift
	if "$@"; then ok "$name"; else bad "$name" "$(echo "$OUT" | tail -3 | tr '\n' ' ')"; fi
}

bare() { OUT=$("$@" 2>&1); RC=$?; }
# confined POLICY ID CMD...: runs CMD under palisade; events in $W/ev/ID.jsonl
confined() {
	pol=$1
	id=$2
	policy_file=$W/pol/$pol.yaml
	shift 2
	OUT=$(palisade run --policy "$W/pol/$pol.yaml" --id "$id" --events "$W/ev/$id.jsonl" -- "$@" 2>&1)
	RC=$?
}
works() { [ "$RC" = 0 ]; }
refused() { [ "$RC" != 0 ] && echo "$OUT" | grep -q "Permission denied\|Operation not permitted\|DENIED"; }
# ld.so reports a refused mapping in its own words; the program must not have run.
refused_or_crashed() { [ "$RC" != 0 ] && ! echo "$OUT" | grep -q "EUID"; }
# event ID PATTERN...: a bpf-lsm event of workload ID matching every pattern
event() {
	id=$1
	shift
	lines=$(grep '"layer":"bpf-lsm"' "$W/ev/$id.jsonl" 2>/dev/null)
	for pat in "$@"; do
		lines=$(echo "$lines" | grep -e "$pat")
	done
	[ -n "$lines" ]
}
policy() {
	name=$1
	shift
	{
		echo "apiVersion: palisade.dev/v1"
		echo "kind: Policy"
		echo "metadata: {name: $name}"
		echo "spec:"
		for line in "$@"; do echo "$line"; done
	} > "$W/pol/$name.yaml"
}

if palisade check | grep -Eq '^BPF LSM +available'; then
	echo "VM-SUITE: bpf-lsm active"
else
	palisade check
	echo "VM-SUITE: 0 passed, 1 failed"
	exit 1
fi
palisade check | grep -q 'layers on this host:.*bpf-lsm' && ok "palisade check lists the bpf-lsm layer" || bad "check" "bpf-lsm not among the layers"
OUT=$(palisade check 2>&1)
check "check: an older Landlock (ABI < 3) is named and not used" \
	sh -c "echo '$OUT' | grep -q '^Landlock .*missing .*ABI [12];'"

# PALISADE_VM_APPEND=palisade_debug=1 make test-vm: libbpf's and the verifier's words.
if [ -n "$palisade_debug" ]; then
	policy debug "  file:" "    rules:" "      - {path: /etc/passwd, access: [read], action: deny}"
	PALISADE_LOG=debug palisade run --policy $W/pol/debug.yaml --id debug -- /bin/true 2>&1 | tail -${palisade_debug_lines:-80} | sed 's/^/DEBUG /'
	[ -n "$palisade_debug_only" ] && { echo "VM-SUITE: 0 passed, 1 failed"; exit 1; }
fi

LIBDIRS="{dir: /lib/, recursive: true}, {dir: /lib64/, recursive: true}, {dir: /usr/lib/, recursive: true}"

# --- file rules: a shadow-like file -------------------------------------------
echo 'root:$6$secret:19000:0:99999:7:::' > $W/etc/shadow
echo '127.0.0.1 localhost' > $W/etc/hosts
ln -s $W/etc/shadow $W/shadow-symlink
ln $W/etc/shadow $W/shadow-hardlink
policy shadow "  file:" "    rules:" \
	"      - {path: $W/etc/shadow, access: [read, write], action: deny, id: shadow, severity: 9}"
bare $P read $W/etc/shadow
check "shadow: readable without a policy" works
confined shadow shadow $P read $W/etc/shadow
check "shadow: read refused" refused
check "shadow: bpf-lsm event with rule id, severity and operation" \
	event shadow '"rule_id":"shadow"' '"severity":9' '"operation":"file"' '"result":"denied"'
confined shadow shadow-sym $P read $W/shadow-symlink
check "shadow: read through a symlink refused" refused
check "shadow: symlink read reported" event shadow-sym '"rule_id":"shadow"'
confined shadow shadow-hard $P read $W/shadow-hardlink
check "shadow: read through a hard link refused" refused
check "shadow: hard link read reported" event shadow-hard '"rule_id":"shadow"'
confined shadow shadow-other $P read $W/etc/hosts
check "shadow: an unrelated file stays readable" works

# --- file rules: a mounted secret, matched across the mount point --------------
mkdir -p $W/run/secrets
mount -t tmpfs secrets $W/run/secrets
echo 'token' > $W/run/secrets/token
policy secrets "  file:" "    rules:" \
	"      - {dir: $W/run/, recursive: true, access: [read], action: deny, id: no-secrets}"
bare $P read $W/run/secrets/token
check "secret: a mounted secret is readable without a policy" works
confined secrets secret $P read $W/run/secrets/token
check "secret: a rule above the mount point refuses the read" refused
check "secret: reported with the full path" event secret '"rule_id":"no-secrets"' "\"target\":\"$W/run/secrets/token\""

# --- file rules: a path created after the workload started ----------------------
policy later "  file:" "    rules:" \
	"      - {path: $W/etc/later, access: [read], action: deny, id: later}"
rm -f $W/etc/later
confined later later sh -c "echo x > $W/etc/later && $P read $W/etc/later"
check "later: a file created after setup is refused by path" refused
check "later: reported" event later '"rule_id":"later"'

# --- file rules: a directory write rule ---------------------------------------
echo 'root ALL=(ALL) ALL' > $W/etc/sudoers
policy etcro "  file:" "    rules:" \
	"      - {dir: $W/etc/, recursive: true, access: [write], action: deny, id: etc-readonly}"
bare $P write $W/etc/sudoers
check "sudoers: writable without a policy" works
confined etcro sudoers $P write $W/etc/sudoers
check "sudoers: write refused by the directory rule" refused
check "sudoers: bpf-lsm event" event sudoers '"rule_id":"etc-readonly"' '"access":"write"'
confined etcro sudoers-read $P read $W/etc/sudoers
check "sudoers: still readable" works

# --- audit mode ---------------------------------------------------------------
policy audit "  mode: audit" "  file:" "    rules:" \
	"      - {path: $W/etc/shadow, access: [read], action: deny, id: shadow-audit}"
confined audit audit $P read $W/etc/shadow
check "audit: the read is allowed" works
check "audit: the would-be denial is logged" event audit '"rule_id":"shadow-audit"' '"result":"allowed"'

# --- exec allowlist -----------------------------------------------------------
cp $P $W/bin/evil
cp $P $W/bin/good
policy allowlist "  process:" "    default: deny" \
	"    allow: [{path: $P}, {dir: $W/bin/, recursive: true}, $LIBDIRS]" \
	"    deny: [{path: $W/bin/evil, id: no-evil, tags: [MITRE-T1059]}]"
OUT=$(palisade policy explain --host $W/pol/allowlist.yaml 2>&1)
check "explain --host: the deny rule is carried by bpf-lsm alone" \
	sh -c "echo '$OUT' | grep -q 'rule no-evil; enforced by bpf-lsm]'"
check "explain --host: no exec-guard fallback is named" sh -c "! echo '$OUT' | grep -q 'exec-guard'"
bare $P exec $W/bin/evil euid
check "exec: the binary runs without a policy" works
bare $P exec /bin/busybox true
check "exec: busybox runs without a policy" works
confined allowlist allowed $P exec $W/bin/good euid
check "exec: an allowed program still runs" works
confined allowlist outside $P exec /bin/busybox true
check "exec: a program outside the allowlist is refused (EACCES)" refused
check "exec: reported as process.default" event outside '"rule_id":"process.default"' '"operation":"exec"'
confined allowlist evil $P exec $W/bin/evil euid
check "exec: the denied binary is refused by path" refused
check "exec: reported with rule id and tags" event evil '"rule_id":"no-evil"' 'MITRE-T1059'
ln -s $W/bin/evil $W/bin/innocent-symlink
confined allowlist evil-sym $P exec $W/bin/innocent-symlink euid
check "exec: refused through a symlink" refused
check "exec: symlink reported" event evil-sym '"rule_id":"no-evil"'
ln $W/bin/evil $W/bin/innocent-hardlink
confined allowlist evil-hard $P exec $W/bin/innocent-hardlink euid
check "exec: refused through a hard link inside an allowed directory" refused
check "exec: hard link reported" event evil-hard '"rule_id":"no-evil"'
LDSO=$(ls /lib64/ld-linux-x86-64.so.2 /lib/ld-linux-x86-64.so.2 2>/dev/null | head -1)
bare $LDSO $W/bin/evil euid
check "exec: ld.so runs a binary without a policy" works
confined allowlist evil-ldso $P exec $LDSO $W/bin/evil euid
check "exec: ld.so cannot map the denied binary" refused_or_crashed
check "exec: the mapping is reported" event evil-ldso '"rule_id":"no-evil"' '"access":"mmap"'
bare $P memfd-exec $W/bin/evil euid
check "exec: memfd + fexecve works without a policy" works
confined allowlist memfd $P memfd-exec $W/bin/evil euid
check "exec: memfd + fexecve refused" refused
check "exec: memfd reported as process.anonymousExec" event memfd '"rule_id":"process.anonymousExec"'
bare $P fd-exec $W/bin/evil euid
check "exec: /proc/self/fd/N works without a policy" works
confined allowlist fdexec $P fd-exec $W/bin/evil euid
check "exec: /proc/self/fd/N refused" refused
check "exec: /proc/self/fd/N reported" event fdexec '"rule_id":"no-evil"'

deep=$W/bin
for i in $(seq 1 50); do deep=$deep/d; done
mkdir -p $deep
cp $P $deep/deep-probe
bare $deep/deep-probe euid
check "exec: a binary 50 directories down runs without a policy" works
confined allowlist deep $P exec $deep/deep-probe euid
check "exec: too deep for the walk: refused in allowlist mode, not guessed" refused
check "exec: too deep is reported" event deep '"rule_id":"process.default"' 'too deep'

# --- set-id -------------------------------------------------------------------
cp $P $W/suid-probe
chown 0:0 $W/suid-probe
chmod 4755 $W/suid-probe
bare su -s /bin/sh nobody -c "$W/suid-probe euid"
check "setuid: a set-uid root binary makes nobody root without a policy" sh -c "echo '$OUT' | grep -q 'EUID 0'"
policy nosuid "  privileges: {noNewPrivileges: true, blockSetuid: true}"
OUT=$(palisade run --policy $W/pol/nosuid.yaml --id suid --events $W/ev/suid.jsonl --user 65534 -- $W/suid-probe euid 2>&1)
RC=$?
check "setuid: the set-uid binary is refused under blockSetuid" refused
check "setuid: reported" event suid '"rule_id":"privileges.blockSetuid"' '"operation":"setuid"'
bare $P setuid 65534
check "setuid: root can switch user without a policy" works
policy blocksetuid "  privileges: {blockSetuid: true}"
confined blocksetuid setresuid $P setuid 65534
check "setuid: setresuid refused under blockSetuid" refused
check "setuid: setresuid reported by bpf-lsm" event setresuid '"rule_id":"privileges.blockSetuid"' '"operation":"setuid"'

# --- the other layers still work beside it --------------------------------------
$P listen 127.0.0.1:3333 > /dev/null 2>&1 &
listener=$!
sleep 1
policy egress "  network:" "    egress:" "      deny: [{cidr: 127.0.0.1/32, ports: [3333], id: mining-pool}]" \
	"  syscalls: {deny: [ptrace]}"
bare $P connect 127.0.0.1:3333
check "egress: the port is reachable without a policy" works
confined egress egress $P connect 127.0.0.1:3333
check "egress: refused by cgroup-sock beside bpf-lsm" refused
check "egress: reported by cgroup-sock" \
	sh -c "grep '\"rule_id\":\"mining-pool\"' $W/ev/egress.jsonl | grep -q '\"layer\":\"cgroup-sock\"'"
confined egress ptrace $P ptrace
check "syscalls: ptrace refused by seccomp beside bpf-lsm" refused
kill $listener

# --- the supervisor dies, the confinement stays -----------------------------------
rm -f $W/orphan.out
palisade run --policy $W/pol/shadow.yaml --id orphan --events $W/ev/orphan.jsonl -- \
	sh -c "while [ ! -f $W/go ]; do sleep 0.2; done; $P read $W/etc/shadow > $W/orphan.out 2>&1" > /dev/null 2>&1 &
supervisor=$!
# The status file is written before the workload is spawned: wait for the workload itself.
for i in $(seq 1 100); do [ -n "$(cat /sys/fs/cgroup/palisade/orphan/cgroup.procs 2>/dev/null)" ] && break; sleep 0.2; done
kill -9 $supervisor
wait $supervisor 2>/dev/null
touch $W/go
for i in $(seq 1 100); do [ -s $W/orphan.out ] && break; sleep 0.2; done
OUT=$(cat $W/orphan.out 2>/dev/null)
check "orphan: with its supervisor SIGKILLed the workload still cannot read the file" \
	sh -c "echo '$OUT' | grep -q DENIED"
for i in $(seq 1 50); do [ -z "$(cat /sys/fs/cgroup/palisade/orphan/cgroup.procs 2>/dev/null)" ] && break; sleep 0.2; done
OUT=$(palisade gc 2>&1)
check "orphan: palisade gc releases it" sh -c "[ ! -e /sys/fs/bpf/palisade/orphan ] && [ ! -e /run/palisade/orphan.json ]"
rm -f $W/go

# --- scope: only the workload ---------------------------------------------------
palisade run --policy $W/pol/shadow.yaml --id scope --events $W/ev/scope.jsonl -- /bin/sleep 3 > /dev/null 2>&1 &
sleep 1
bare $P read $W/etc/shadow
check "scope: a process outside the workload still reads the file" works
wait

# --- nothing stays attached ---------------------------------------------------
left_pins=$(ls /sys/fs/bpf/palisade 2>/dev/null | wc -l)
left_cgroups=$(find /sys/fs/cgroup/palisade -mindepth 1 -type d 2>/dev/null | wc -l)
OUT="pins: $left_pins, cgroups: $left_cgroups"
check "release: no pins and no cgroups left" [ "$left_pins" = 0 -a "$left_cgroups" = 0 ]
left_links=$(cat /proc/*/fdinfo/* 2>/dev/null | grep -c '^link_type:')
OUT="links held: $left_links"
check "release: no BPF link is held by any process" [ "$left_links" = 0 ]

echo "VM-SUITE: $pass passed, $fail failed"
