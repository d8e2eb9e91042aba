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

#include "proc_socket.h"

int main(void) {
    int fd = proc_listen();
    if (fd < 0)
        return 1;

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
        struct proc_event ev;
        if (!read_event(buf, n, &ev))
            continue;
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
