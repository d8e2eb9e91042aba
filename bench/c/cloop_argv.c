/*
 * cloop_argv: the C receive loop that names short-lived programs as early as anything can: it reads
 * /proc/PID/cmdline in its receive loop as each exec event arrives (the reference for how many execs of
 * short-lived programs a connector listener can name; see the `argv` benchmark).
 *
 * Like cloop.c: socket(AF_NETLINK, SOCK_DGRAM, NETLINK_CONNECTOR), bind to group 1, the legacy LISTEN, then one
 * recv() per datagram. On an exec it opens /proc/PID/cmdline at once and prints
 *   exec <pid> <argv joined by spaces>     (or `exec <pid>` when the process is already gone)
 * Other events are not printed. On start it prints "listening port=<port>" and flushes. SIGINT or SIGTERM ends
 * the loop: it sends PROC_CN_MCAST_IGNORE, flushes and exits 0.
 *
 * Build: cc -O2 -o cloop_argv bench/c/cloop_argv.c
 */
#include <errno.h>
#include <fcntl.h>
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

static int send_op(int fd, uint32_t op) {
    char buf[NLMSG_SPACE(sizeof(struct cn_msg) + sizeof(uint32_t))];
    struct nlmsghdr *nl = (struct nlmsghdr *)buf;
    struct cn_msg *cn = (struct cn_msg *)NLMSG_DATA(nl);
    memset(buf, 0, sizeof(buf));
    nl->nlmsg_len = NLMSG_LENGTH(sizeof(struct cn_msg) + sizeof(uint32_t));
    nl->nlmsg_type = NLMSG_DONE;
    cn->id.idx = CN_IDX_PROC;
    cn->id.val = CN_VAL_PROC;
    cn->len = sizeof(uint32_t);
    memcpy(cn->data, &op, sizeof(op));
    return send(fd, buf, nl->nlmsg_len, 0) < 0 ? -1 : 0;
}

static void print_exec(int pid) {
    char path[64], argv[4096];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, argv, sizeof(argv) - 1);
    if (fd >= 0)
        close(fd);
    if (n <= 0) {
        printf("exec %d\n", pid);
        return;
    }
    for (ssize_t i = 0; i < n; i++)
        if (argv[i] == '\0' || argv[i] == '\n')
            argv[i] = ' ';
    argv[n] = '\0';
    printf("exec %d %s\n", pid, argv);
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
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
        struct proc_event ev;
        size_t len = cn->len < sizeof(ev) ? cn->len : sizeof(ev);
        memset(&ev, 0, sizeof(ev));
        memcpy(&ev, cn->data, len);
        if (ev.what == PROC_EVENT_EXEC)
            print_exec(ev.event_data.exec.process_tgid);
    }
    send_op(fd, PROC_CN_MCAST_IGNORE);
    fflush(stdout);
    return 0;
}
