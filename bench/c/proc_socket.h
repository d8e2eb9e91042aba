/*
 * proc_socket.h: what the C reference listeners share: the proc connector socket, its LISTEN/IGNORE, and
 * stopping on SIGINT/SIGTERM. Header-only, so that each listener stays one `cc` command.
 */
#ifndef CNLINK_BENCH_PROC_SOCKET_H
#define CNLINK_BENCH_PROC_SOCKET_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

/* Sends the legacy (4-byte) multicast op to the kernel's proc connector. */
static int send_op(int fd, uint32_t op) {
    char buf[NLMSG_SPACE(sizeof(struct cn_msg) + sizeof(uint32_t))];
    struct nlmsghdr *nl = (struct nlmsghdr *)buf;
    struct cn_msg *cn = (struct cn_msg *)NLMSG_DATA(nl);
    memset(buf, 0, sizeof(buf));
    nl->nlmsg_len = NLMSG_LENGTH(sizeof(struct cn_msg) + sizeof(uint32_t));
    nl->nlmsg_type = NLMSG_DONE;
    nl->nlmsg_pid = 0;
    cn->id.idx = CN_IDX_PROC;
    cn->id.val = CN_VAL_PROC;
    cn->len = sizeof(uint32_t);
    memcpy(cn->data, &op, sizeof(op));
    return send(fd, buf, nl->nlmsg_len, 0) < 0 ? -1 : 0;
}

/*
 * Installs the stop handlers (no SA_RESTART: a signal interrupts the blocking recv), opens a connector socket
 * bound to group 1 with a kernel-assigned port, subscribes, prints "listening port=<port>" and flushes. Returns
 * the socket, or -1 after printing why.
 */
static int proc_listen(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_CONNECTOR);
    if (fd < 0) {
        perror("socket");
        return -1;
    }
    struct sockaddr_nl addr = {.nl_family = AF_NETLINK, .nl_pid = 0, .nl_groups = CN_IDX_PROC};
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        perror("bind");
        return -1;
    }
    socklen_t alen = sizeof(addr);
    getsockname(fd, (struct sockaddr *)&addr, &alen);
    if (send_op(fd, PROC_CN_MCAST_LISTEN) < 0) {
        perror("send LISTEN");
        return -1;
    }
    printf("listening port=%u\n", addr.nl_pid);
    fflush(stdout);
    return fd;
}

/* Copies the proc_event of a received datagram (not 8-aligned there); returns 0 when it holds none. */
static int read_event(const void *dgram, ssize_t n, struct proc_event *ev) {
    const struct nlmsghdr *nl = (const struct nlmsghdr *)dgram;
    if (!NLMSG_OK(nl, (size_t)n))
        return 0;
    const struct cn_msg *cn = (const struct cn_msg *)NLMSG_DATA(nl);
    if (cn->len < 16 + 8)
        return 0;
    size_t len = cn->len < sizeof(*ev) ? cn->len : sizeof(*ev);
    memset(ev, 0, sizeof(*ev));
    memcpy(ev, cn->data, len);
    return 1;
}

#endif
