/*
 * A connector client written from the documents' userspace pseudocode (Documentation/connector, ucon.c), with
 * only two changes for the userspace bus: the protocol is NETLINK_USERSOCK instead of NETLINK_CONNECTOR, and the
 * destination port is the bus daemon's instead of the kernel's 0.
 *
 * usage: echo_client BUS_PORT IDX VAL COUNT
 * Sends COUNT requests to {IDX, VAL} and checks that each reply has the same seq, ack + 1 and the same payload.
 * Exit status 0 when every reply matched.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <linux/netlink.h>

/* From <linux/connector.h>. */
struct cb_id {
	__u32 idx;
	__u32 val;
};

struct cn_msg {
	struct cb_id id;
	__u32 seq;
	__u32 ack;
	__u16 len; /* Length of the following data */
	__u16 flags;
	__u8 data[0];
};

#define MAX_PAYLOAD 256

int main(int argc, char *argv[])
{
	if (argc != 5) {
		fprintf(stderr, "usage: %s BUS_PORT IDX VAL COUNT\n", argv[0]);
		return 2;
	}
	__u32 bus_port = strtoul(argv[1], NULL, 0);
	__u32 idx = strtoul(argv[2], NULL, 0), val = strtoul(argv[3], NULL, 0);
	int count = atoi(argv[4]);

	int s = socket(PF_NETLINK, SOCK_DGRAM, NETLINK_USERSOCK);
	if (s == -1) {
		perror("socket");
		return 2;
	}
	struct sockaddr_nl l_local = { .nl_family = AF_NETLINK, .nl_pid = 0, .nl_groups = 0 };
	if (bind(s, (struct sockaddr *)&l_local, sizeof(l_local)) == -1) {
		perror("bind");
		return 2;
	}
	struct timeval tv = { .tv_sec = 2 };
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

	struct sockaddr_nl dest = { .nl_family = AF_NETLINK, .nl_pid = bus_port, .nl_groups = 0 };
	srand(time(NULL) ^ getpid());
	__u32 ack0 = rand();
	int matched = 0;

	for (int i = 0; i < count; i++) {
		char buf[NLMSG_SPACE(sizeof(struct cn_msg) + MAX_PAYLOAD)];
		char text[64];
		int n = snprintf(text, sizeof(text), "counter = %d", i) + 1; /* with its NUL, as cn_test */

		memset(buf, 0, sizeof(buf));
		struct nlmsghdr *nlh = (struct nlmsghdr *)buf;
		nlh->nlmsg_len = NLMSG_LENGTH(sizeof(struct cn_msg) + n);
		nlh->nlmsg_type = NLMSG_DONE;
		nlh->nlmsg_flags = 0;
		nlh->nlmsg_seq = i;
		nlh->nlmsg_pid = getpid();

		struct cn_msg *msg = NLMSG_DATA(nlh);
		msg->id.idx = idx;
		msg->id.val = val;
		msg->seq = i;
		msg->ack = ack0 + i;
		msg->len = n;
		memcpy(msg->data, text, n);

		if (sendto(s, buf, nlh->nlmsg_len, 0, (struct sockaddr *)&dest, sizeof(dest)) == -1) {
			perror("sendto");
			return 2;
		}

		char rbuf[8192];
		int len = recv(s, rbuf, sizeof(rbuf), 0);
		if (len < 0) {
			fprintf(stderr, "request %d: no reply: %s\n", i, strerror(errno));
			continue;
		}
		struct nlmsghdr *rh = (struct nlmsghdr *)rbuf;
		if (!NLMSG_OK(rh, (unsigned)len) || rh->nlmsg_type != NLMSG_DONE ||
		    rh->nlmsg_len < NLMSG_LENGTH(sizeof(struct cn_msg))) {
			fprintf(stderr, "request %d: malformed reply\n", i);
			continue;
		}
		struct cn_msg *r = NLMSG_DATA(rh);
		int ok = r->id.idx == idx && r->id.val == val && r->seq == msg->seq && r->ack == msg->ack + 1 &&
			 r->len == n && rh->nlmsg_len >= NLMSG_LENGTH(sizeof(struct cn_msg) + r->len) &&
			 memcmp(r->data, text, n) == 0;
		printf("%u.%u seq %u ack %u len %u: %s\n", r->id.idx, r->id.val, r->seq, r->ack, r->len,
		       ok ? "matched" : "MISMATCH");
		matched += ok;
	}
	printf("%d/%d matched\n", matched, count);
	close(s);
	return matched == count ? 0 : 1;
}
