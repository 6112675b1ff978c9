/* standin-spt, dynamically linked: the stand-in for Solo5's solo5-spt that
   testdata/standin-spt is, in C and linked against Debian's libseccomp as
   the real tender is (Solo5 links solo5-spt dynamically against glibc and
   libseccomp), so the boot test proves a dynamically linked tender starts in
   the host image. The test builds it with `gcc -O2 -o solo5-spt
   standin-spt.c -lseccomp`.

   It behaves as the Go stand-in does: it checks its command line the way
   solo5-spt would read it (the tap, the kernel file, the unikernel's --ipv4
   and --ipv4-gateway), takes the unikernel's address itself (on lo) and
   answers HTTP there with the command line it was given. Then, as the real
   tender does, it confines itself with a seccomp filter built by
   libseccomp, and reports the library's version in an X-Libseccomp header,
   which only a loaded libseccomp can give. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <seccomp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static void fail(const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	fputs("standin-spt: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static const char *after(const char *arg, const char *prefix) {
	size_t n = strlen(prefix);
	return strncmp(arg, prefix, n) == 0 ? arg + n : NULL;
}

/* take_address adds ip/32 to lo over rtnetlink (RTM_NEWADDR, replacing an
   existing one), as the Go stand-in's netlink.AddrReplace does. */
static void take_address(struct in_addr ip) {
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		fail("netlink socket: %s", strerror(errno));
	struct {
		struct nlmsghdr nh;
		struct ifaddrmsg ifa;
		char attrs[64];
	} req;
	memset(&req, 0, sizeof req);
	req.nh.nlmsg_len = NLMSG_LENGTH(sizeof req.ifa);
	req.nh.nlmsg_type = RTM_NEWADDR;
	req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
	req.ifa.ifa_family = AF_INET;
	req.ifa.ifa_prefixlen = 32;
	req.ifa.ifa_scope = RT_SCOPE_HOST;
	req.ifa.ifa_index = if_nametoindex("lo");
	if (req.ifa.ifa_index == 0)
		fail("no lo: %s", strerror(errno));
	unsigned short types[] = {IFA_LOCAL, IFA_ADDRESS};
	for (size_t i = 0; i < 2; i++) {
		struct rtattr *rta = (struct rtattr *)((char *)&req + NLMSG_ALIGN(req.nh.nlmsg_len));
		rta->rta_type = types[i];
		rta->rta_len = RTA_LENGTH(sizeof ip);
		memcpy(RTA_DATA(rta), &ip, sizeof ip);
		req.nh.nlmsg_len = NLMSG_ALIGN(req.nh.nlmsg_len) + RTA_ALIGN(rta->rta_len);
	}
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
	if (sendto(fd, &req, req.nh.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0)
		fail("RTM_NEWADDR: %s", strerror(errno));
	char buf[4096];
	ssize_t n = recv(fd, buf, sizeof buf, 0);
	if (n < (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr)))
		fail("RTM_NEWADDR: no answer: %s", strerror(errno));
	struct nlmsghdr *ans = (struct nlmsghdr *)buf;
	if (ans->nlmsg_type == NLMSG_ERROR) {
		int err = ((struct nlmsgerr *)NLMSG_DATA(ans))->error;
		if (err != 0)
			fail("taking %s: %s", inet_ntoa(ip), strerror(-err));
	}
	close(fd);
}

/* confine loads a seccomp filter, as solo5-spt does before it runs the
   unikernel; this one only forbids ptrace, so serving keeps working. */
static void confine(void) {
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (ctx == NULL)
		fail("seccomp_init failed");
	int err = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ptrace), 0);
	if (err == 0)
		err = seccomp_load(ctx);
	if (err != 0)
		fail("loading the seccomp filter: %s", strerror(-err));
	seccomp_release(ctx);
}

int main(int argc, char **argv) {
	const char *tap = NULL, *kernel = NULL, *ipv4 = NULL, *gateway = NULL, *v;
	for (int i = 1; i < argc; i++) {
		if ((v = after(argv[i], "--net:service=")))
			tap = v;
		else if ((v = after(argv[i], "--ipv4-gateway=")))
			gateway = v;
		else if ((v = after(argv[i], "--ipv4=")))
			ipv4 = v;
		else if (after(argv[i], "--mem="))
			;
		else if (argv[i][0] != '-' && kernel == NULL)
			kernel = argv[i];
	}
	if (tap == NULL || if_nametoindex(tap) == 0)
		fail("no tap \"%s\"", tap ? tap : "");
	struct stat st;
	if (kernel == NULL || stat(kernel, &st) != 0 || st.st_size == 0)
		fail("no unikernel \"%s\"", kernel ? kernel : "");

	/* --ipv4=A.B.C.D/N and a gateway inside that network. */
	char addr[32];
	const char *slash = ipv4 ? strchr(ipv4, '/') : NULL;
	struct in_addr ip, gw;
	int bits = slash ? atoi(slash + 1) : -1;
	if (slash == NULL || (size_t)(slash - ipv4) >= sizeof addr || bits < 1 || bits > 32 || gateway == NULL)
		fail("bad --ipv4=\"%s\" --ipv4-gateway=\"%s\"", ipv4 ? ipv4 : "", gateway ? gateway : "");
	memcpy(addr, ipv4, slash - ipv4);
	addr[slash - ipv4] = '\0';
	uint32_t mask = htonl(0xffffffffu << (32 - bits));
	if (inet_pton(AF_INET, addr, &ip) != 1 || inet_pton(AF_INET, gateway, &gw) != 1 || (ip.s_addr & mask) != (gw.s_addr & mask))
		fail("bad --ipv4=\"%s\" --ipv4-gateway=\"%s\"", ipv4, gateway);
	take_address(ip);

	/* The body: "standin-spt ARGS\n", as the Go stand-in answers. */
	char body[4096];
	size_t len = (size_t)snprintf(body, sizeof body, "standin-spt");
	for (int i = 1; i < argc && len < sizeof body; i++)
		len += (size_t)snprintf(body + len, sizeof body - len, " %s", argv[i]);
	if (len + 2 > sizeof body)
		fail("command line too long");
	body[len++] = '\n';
	body[len] = '\0';

	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(80), .sin_addr = ip};
	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(s, 16) != 0)
		fail("listening on %s:80: %s", addr, strerror(errno));
	confine();
	const struct scmp_version *lib = seccomp_version();
	printf("standin-spt: serving http://%s/ for tap %s with libseccomp %u.%u.%u\n", addr, tap, lib->major, lib->minor, lib->micro);
	fflush(stdout);
	for (;;) {
		int c = accept(s, NULL, NULL);
		if (c < 0)
			continue;
		/* Read the request's head; one GET per connection is all the test sends. */
		char req[4096];
		size_t got = 0;
		ssize_t n;
		while (got < sizeof req - 1 && (n = read(c, req + got, sizeof req - 1 - got)) > 0) {
			got += (size_t)n;
			req[got] = '\0';
			if (strstr(req, "\r\n\r\n"))
				break;
		}
		char head[256];
		int h = snprintf(head, sizeof head,
		                 "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
		                 "X-Libseccomp: %u.%u.%u\r\nConnection: close\r\n\r\n",
		                 len, lib->major, lib->minor, lib->micro);
		if (write(c, head, (size_t)h) == h && write(c, body, len) == (ssize_t)len)
			shutdown(c, SHUT_WR);
		close(c);
	}
}
