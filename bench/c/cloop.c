/*
 * cloop: the minimal C receive loop for the proc-event storm benchmark (the floor).
 *
 * It does what a bare peer listener does and nothing more:
 *   socket(AF_NETLINK, SOCK_DGRAM, NETLINK_CONNECTOR), bind to group 1 (CN_IDX_PROC) with a
 *   kernel-assigned port, send the legacy 4-byte PROC_CN_MCAST_LISTEN, then recv() one datagram
 *   per call and print one line per event with stdio. The receive buffer is left at the system
 *   default on purpose: this is the baseline the issue compares against.
 *
 * Output, one line per event (stdout, stdio's default buffering; flushed at exit):
 *   fork <parent_pid> <parent_tgid> <child_pid> <child_tgid>
 *   exit <pid> <tgid> <exit_code> <parent_pid> <parent_tgid>
 *   ev <what> <pid> <tgid>          (any other event; pid/tgid are the first two union words)
 *   enobufs                         (recv failed with ENOBUFS: the kernel dropped messages)
 * On start it prints "listening port=<port>" and flushes. SIGINT or SIGTERM ends the loop:
 * it sends PROC_CN_MCAST_IGNORE, flushes and exits 0.
 *
 * Build: cc -O2 -o cloop bench/c/cloop.c
 */
#include <errno.h>
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

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: a signal interrupts the blocking recv */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_CONNECTOR);
    if (fd < 0) {
        perror("socket");
        return 1;
    }
    struct sockaddr_nl addr = {.nl_family = AF_NETLINK, .nl_pid = 0, .nl_groups = CN_IDX_PROC};
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        perror("bind");
        return 1;
    }
    socklen_t alen = sizeof(addr);
    getsockname(fd, (struct sockaddr *)&addr, &alen);
    if (send_op(fd, PROC_CN_MCAST_LISTEN) < 0) {
        perror("send LISTEN");
        return 1;
    }
    printf("listening port=%u\n", addr.nl_pid);
    fflush(stdout);

    /* uint64_t for alignment; a proc datagram is 76 bytes. */
    uint64_t buf[1024];
    while (!stop) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == ENOBUFS) {
                puts("enobufs");
                continue;
            }
            perror("recv");
            break;
        }
        struct nlmsghdr *nl = (struct nlmsghdr *)buf;
        if (!NLMSG_OK(nl, (size_t)n))
            continue;
        struct cn_msg *cn = (struct cn_msg *)NLMSG_DATA(nl);
        if (cn->len < 16 + 8)
            continue;
        /* Read the fields with memcpy: the event is not 8-aligned in the datagram. */
        struct proc_event ev;
        size_t len = cn->len < sizeof(ev) ? cn->len : sizeof(ev);
        memset(&ev, 0, sizeof(ev));
        memcpy(&ev, cn->data, len);
        switch (ev.what) {
        case PROC_EVENT_NONE:
            break; /* the ack of a LISTEN */
        case PROC_EVENT_FORK:
            printf("fork %d %d %d %d\n", ev.event_data.fork.parent_pid,
                   ev.event_data.fork.parent_tgid, ev.event_data.fork.child_pid,
                   ev.event_data.fork.child_tgid);
            break;
        case PROC_EVENT_EXIT:
            printf("exit %d %d %u %d %d\n", ev.event_data.exit.process_pid,
                   ev.event_data.exit.process_tgid, ev.event_data.exit.exit_code,
                   ev.event_data.exit.parent_pid, ev.event_data.exit.parent_tgid);
            break;
        default:
            printf("ev %u %d %d\n", (unsigned)ev.what, ev.event_data.exec.process_pid,
                   ev.event_data.exec.process_tgid);
            break;
        }
    }
    send_op(fd, PROC_CN_MCAST_IGNORE);
    fflush(stdout);
    return 0;
}
