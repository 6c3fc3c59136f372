#!/bin/sh
# The BPF LSM hot paths inside the test guest (`make bench-vm`): open+close of
# an allowed file and fork+execve of a static binary, bare and under policies
# of 10, 1,000 and 10,000 rules, interleaved. The guest is emulated (TCG), so
# only the ratios mean anything. Prints "BENCH name rules ratio bare_ns ns".
P=/usr/bin/palisade-probe
W=/tmp/bench
mkdir -p $W
if palisade check | grep -Eq '^BPF LSM +available'; then
	echo "VM-SUITE: bpf-lsm active"
else
	echo "VM-SUITE: BPF LSM unavailable: nothing to measure"
	exit 1
fi
ROUNDS=${palisade_bench_rounds:-3}
OPENS=${palisade_bench_opens:-20000}
EXECS=${palisade_bench_execs:-200}

# Rules shaped like palisade-bench's: file denials, process denials, none on the hot paths' files.
policy() {
	n=$1
	third=$((n / 3))
	[ $third -lt 1 ] && third=1
	{
		echo "apiVersion: palisade.dev/v1"
		echo "kind: Policy"
		echo "metadata: {name: bench-$n}"
		echo "spec:"
		echo "  process:"
		echo "    anonymousExec: allow"
		echo "    deny:"
		i=0
		while [ $i -lt $((n - third)) ]; do
			echo "      - {path: /nonexistent/bin/tool$i}"
			i=$((i + 1))
		done
		echo "  file:"
		echo "    rules:"
		i=0
		while [ $i -lt $third ]; do
			echo "      - {path: /nonexistent/d$((i % 50))/f$i, access: [read, write], action: deny}"
			i=$((i + 1))
		done
	} > $W/policy-$n.yaml
}
for n in 10 1000 10000; do policy $n; done

ns() { "$@" 2>/dev/null | sed -n 's/^ns_per_op //p'; }
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for hp in "open:bench-open /etc/passwd $OPENS" "exec:bench-exec /bin/busybox $EXECS"; do
	name=${hp%%:*}
	args=${hp#*:}
	bare=""
	r10=""
	r1000=""
	r10000=""
	round=0
	while [ $round -lt $ROUNDS ]; do
		bare="$bare $(ns $P $args)"
		for n in 10 1000 10000; do
			v=$(ns palisade run --policy $W/policy-$n.yaml --id bench-$n --events $W/events.jsonl -- $P $args)
			eval "r$n=\"\$r$n $v\""
		done
		round=$((round + 1))
	done
	b=$(echo $bare | median)
	for n in 10 1000 10000; do
		eval "m=\$(echo \$r$n | median)"
		echo "BENCH $name $n $(awk -v m=$m -v b=$b 'BEGIN {printf "%.3f", m / b}') $b $m"
	done
done
echo "VM-SUITE: bench done"
