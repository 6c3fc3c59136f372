/* Egress by destination, at connect() and at UDP sendmsg(); raw and packet
 * sockets at creation. Attached to the workload's cgroup, so they see only
 * its processes (and those of child cgroups). */

#define AF_INET 2
#define AF_INET6 10
#define AF_PACKET 17
#define SOCK_RAW 3

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pal_prefix_key);
	__type(value, __u32);
} egress_prefixes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pal_port_key);
	__type(value, struct pal_rule_ref);
} egress_ports SEC(".maps");

static __always_inline struct pal_rule_ref *port_lookup(__u32 group, __u8 proto, __u16 port)
{
	struct pal_port_key k = { .group = group, .protocol = proto, .port = port };
	return bpf_map_lookup_elem(&egress_ports, &k);
}

/* Returns 1 to allow, 0 to refuse (the caller sees EPERM). */
static __always_inline int egress_decide(__u8 addr[16], __u16 port, __u8 proto, __u8 family, __u32 kind)
{
	struct pal_config *cfg = get_config();
	if (!cfg)
		return 0; /* not configured: fail closed */
	__u32 verdict = cfg->egress_default;
	__u32 rule = PAL_NO_RULE;

	struct pal_prefix_key key = { .prefixlen = 128 };
	__builtin_memcpy(key.addr, addr, 16);
	__u32 *group = bpf_map_lookup_elem(&egress_prefixes, &key);
	if (group) {
		/* Port beats any-port, protocol beats any-protocol. */
		struct pal_rule_ref *ref = port_lookup(*group, proto, port);
		if (!ref)
			ref = port_lookup(*group, proto, 0);
		if (!ref)
			ref = port_lookup(*group, 0, port);
		if (!ref)
			ref = port_lookup(*group, 0, 0);
		if (ref) {
			verdict = ref->verdict;
			rule = ref->rule;
		}
	}
	if (verdict == PAL_ALLOW)
		return 1;
	if (verdict == PAL_DENY && cfg->audit_only)
		verdict = PAL_AUDIT;
	struct pal_event *ev = event_start(kind, verdict, rule);
	if (ev) {
		__builtin_memcpy(ev->addr, addr, 16);
		ev->port = port;
		ev->protocol = proto;
		ev->family = family;
		bpf_ringbuf_submit(ev, 0);
	}
	return verdict == PAL_AUDIT ? 1 : 0;
}

static __always_inline void map_v4(__u8 out[16], __u32 ip4_be)
{
	__builtin_memset(out, 0, 10);
	out[10] = 0xff;
	out[11] = 0xff;
	__builtin_memcpy(&out[12], &ip4_be, 4);
}

static __always_inline int check4(struct bpf_sock_addr *ctx, __u32 kind)
{
	__u8 addr[16];
	map_v4(addr, ctx->user_ip4);
	return egress_decide(addr, bpf_ntohs(ctx->user_port), ctx->protocol, AF_INET, kind);
}

static __always_inline int check6(struct bpf_sock_addr *ctx, __u32 kind)
{
	__u8 addr[16];
	__u32 w0 = ctx->user_ip6[0], w1 = ctx->user_ip6[1], w2 = ctx->user_ip6[2], w3 = ctx->user_ip6[3];
	__builtin_memcpy(&addr[0], &w0, 4);
	__builtin_memcpy(&addr[4], &w1, 4);
	__builtin_memcpy(&addr[8], &w2, 4);
	__builtin_memcpy(&addr[12], &w3, 4);
	/* A v4-mapped address is already in the v4 rules' key space. */
	return egress_decide(addr, bpf_ntohs(ctx->user_port), ctx->protocol, AF_INET6, kind);
}

SEC("cgroup/connect4")
int pal_connect4(struct bpf_sock_addr *ctx) { return check4(ctx, PAL_EV_CONNECT); }

SEC("cgroup/connect6")
int pal_connect6(struct bpf_sock_addr *ctx) { return check6(ctx, PAL_EV_CONNECT); }

SEC("cgroup/sendmsg4")
int pal_sendmsg4(struct bpf_sock_addr *ctx) { return check4(ctx, PAL_EV_SENDMSG); }

SEC("cgroup/sendmsg6")
int pal_sendmsg6(struct bpf_sock_addr *ctx) { return check6(ctx, PAL_EV_SENDMSG); }

SEC("cgroup/sock_create")
int pal_sock_create(struct bpf_sock *ctx)
{
	if (ctx->type != SOCK_RAW && ctx->family != AF_PACKET)
		return 1;
	struct pal_config *cfg = get_config();
	if (!cfg)
		return 0;
	__u32 verdict = cfg->raw_sockets;
	if (verdict == PAL_ALLOW)
		return 1;
	if (verdict == PAL_DENY && cfg->audit_only)
		verdict = PAL_AUDIT;
	struct pal_event *ev = event_start(PAL_EV_SOCK_CREATE, verdict, PAL_NO_RULE);
	if (ev) {
		ev->family = ctx->family;
		ev->protocol = ctx->protocol;
		bpf_ringbuf_submit(ev, 0);
	}
	return verdict == PAL_AUDIT ? 1 : 0;
}
