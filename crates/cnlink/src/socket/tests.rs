//! Socket tests over `NETLINK_USERSOCK`: unicast there needs no privilege.

use super::*;

fn pair() -> (Socket, Socket) {
    (Socket::open(Protocol::Usersock).unwrap(), Socket::open(Protocol::Usersock).unwrap())
}

#[test]
fn kernel_assigned_ports_are_distinct() {
    let (a, b) = pair();
    let (pa, pb) = (a.port(), b.port());
    assert_ne!(pa, 0);
    assert_ne!(pa, pb);
}

#[test]
fn unicast_with_sender_and_credentials() {
    let (a, b) = pair();
    b.set_passcred(true).unwrap();
    a.send_to(b"hello", NlAddr::port(b.port())).unwrap();
    let mut buf = [0u8; 64];
    let meta = b.recv(&mut buf).unwrap();
    assert_eq!(&buf[..meta.len], b"hello");
    assert!(!meta.truncated);
    assert_eq!(meta.from, NlAddr::port(a.port()));
    let creds = meta.creds.expect("SO_PASSCRED gives credentials");
    assert_eq!(creds.pid, std::process::id() as i32);
    assert_eq!(creds.uid, rustix::process::getuid().as_raw());
}

#[test]
fn truncation_is_reported() {
    let (a, b) = pair();
    a.send_to(&[7u8; 100], NlAddr::port(b.port())).unwrap();
    let mut buf = [0u8; 10];
    let meta = b.recv(&mut buf).unwrap();
    assert!(meta.truncated);
    assert_eq!(meta.len, 10);
}

#[test]
fn batch_receives_several_in_order() {
    let (a, b) = pair();
    let to = NlAddr::port(b.port());
    for i in 0..5u8 {
        a.send_to(&[i; 3], to).unwrap();
    }
    b.set_passcred(true).unwrap();
    a.send_to(&[9; 3], to).unwrap();
    let mut batch = RecvBatch::new(4, 64);
    assert_eq!(b.recv_batch(&mut batch, true).unwrap(), 4);
    let got: Vec<u8> = batch.iter().map(|(_, d)| d[0]).collect();
    assert_eq!(got, [0, 1, 2, 3]);
    assert_eq!(b.recv_batch(&mut batch, false).unwrap(), 2);
    let (meta, d) = batch.iter().last().unwrap();
    assert_eq!(d, &[9, 9, 9]);
    assert!(meta.creds.is_some());
    let err = b.recv_batch(&mut batch, false).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    assert!(batch.is_empty());
}

#[test]
fn nonblocking_and_wait() {
    let (a, b) = pair();
    b.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(b.recv(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
    assert!(!b.wait_readable(Some(Duration::from_millis(10))).unwrap());
    a.send_to(b"x", NlAddr::port(b.port())).unwrap();
    assert!(b.wait_readable(Some(Duration::from_secs(5))).unwrap());
    assert_eq!(b.recv(&mut buf).unwrap().len, 1);
}

/// Whether this process may use `SO_RCVBUFFORCE` (`CAP_NET_ADMIN` in its effective set).
fn has_net_admin() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let caps = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap().trim();
    u64::from_str_radix(caps, 16).unwrap() & (1 << 12) != 0 // CAP_NET_ADMIN
}

#[test]
fn receive_buffer_can_be_sized() {
    let (a, _) = pair();
    let want = 1usize << 20;
    let granted = a.set_recv_buffer(want).unwrap();
    // The kernel doubles what it grants for its bookkeeping; without privilege it first caps at rmem_max.
    let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max").unwrap().trim().parse().unwrap();
    let expected = if has_net_admin() { 2 * want } else { 2 * want.min(rmem_max) };
    assert_eq!(granted, expected, "rmem_max {rmem_max}, CAP_NET_ADMIN {}", has_net_admin());
    assert_eq!(a.recv_buffer().unwrap(), granted);
}

#[test]
fn a_new_socket_has_dropped_nothing() {
    let (a, _) = pair();
    assert_eq!(a.drops().unwrap(), Some(0), "this kernel has SK_MEMINFO_DROPS");
}

#[test]
fn drops_count_multicasts_that_did_not_fit() {
    if !rustix::process::geteuid().is_root() {
        crate::testing::skip("sending to USERSOCK groups needs root");
        return;
    }
    let (a, b) = pair();
    b.set_recv_buffer(1).unwrap(); // the kernel's minimum: a few datagrams
    b.add_membership(6).unwrap();
    let to = NlAddr { port: 0, groups: crate::wire::group_mask(6).unwrap() };
    let sent = 200u32;
    for _ in 0..sent {
        // The unicast part to port 0 fails on USERSOCK (no kernel socket there); the multicast is delivered.
        let _ = a.send_to(&[1u8; 64], to);
    }
    let mut received = 0u32;
    let mut overruns = 0;
    let mut buf = [0u8; 128];
    b.set_nonblocking(true).unwrap();
    loop {
        match b.recv(&mut buf) {
            Ok(_) => received += 1,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => overruns += 1,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(overruns, 1, "one ENOBUFS per congestion");
    assert!(received < sent, "the buffer must overflow");
    assert_eq!(b.drops().unwrap(), Some(sent - received), "every datagram not received was counted as dropped");
}

#[test]
fn a_clone_sends_from_the_same_port() {
    let (a, b) = pair();
    let c = a.try_clone().unwrap();
    assert_eq!(c.port(), a.port());
    drop(a);
    c.send_to(b"from the clone", NlAddr::port(b.port())).unwrap();
    let mut buf = [0u8; 32];
    let meta = b.recv(&mut buf).unwrap();
    assert_eq!(meta.from, NlAddr::port(c.port()));
}

#[test]
fn wait_any_sees_the_readable_one() {
    let (a, b) = pair();
    let c = Socket::open(Protocol::Usersock).unwrap();
    assert!(!wait_any([&b, &c], Some(Duration::from_millis(10))).unwrap());
    a.send_to(b"x", NlAddr::port(c.port())).unwrap();
    assert!(wait_any([&b, &c], Some(Duration::from_secs(5))).unwrap());
}

extern "C" fn ignore_signal(_: libc::c_int) {}

#[test]
fn signals_do_not_extend_a_wait() {
    // SAFETY: installs a handler that does nothing for SIGUSR1, which nothing else in this test binary uses; the
    // zeroed `sigaction` is a valid empty mask with no flags.
    unsafe {
        let mut act: libc::sigaction = core::mem::zeroed();
        act.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        assert_eq!(libc::sigaction(libc::SIGUSR1, &act, core::ptr::null_mut()), 0);
    }
    let (_, b) = pair();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        // SAFETY: `pthread_self` has no preconditions.
        tx.send(unsafe { libc::pthread_self() }).unwrap();
        let start = std::time::Instant::now();
        let readable = b.wait_readable(Some(Duration::from_millis(300))).unwrap();
        (readable, start.elapsed())
    });
    let thread = rx.recv().unwrap();
    // Interrupt the wait every 20 ms for 3 s: a wait that restarted its full timeout after each signal would only
    // end once they stop.
    let start = std::time::Instant::now();
    while !waiter.is_finished() && start.elapsed() < Duration::from_secs(3) {
        // SAFETY: `thread` is alive until `waiter` is joined below, which happens after this loop.
        unsafe { libc::pthread_kill(thread, libc::SIGUSR1) };
        std::thread::sleep(Duration::from_millis(20));
    }
    let (readable, took) = waiter.join().unwrap();
    assert!(!readable);
    assert!(took >= Duration::from_millis(300), "ended early: {took:?}");
    assert!(took < Duration::from_secs(3), "signals kept the wait going: {took:?}");
}

#[test]
fn control_truncation_is_reported() {
    // SAFETY: plain integers and pointers; all-zero is valid.
    let mut addr: libc::sockaddr_nl = unsafe { core::mem::zeroed() };
    // SAFETY: as above.
    let mut h: libc::msghdr = unsafe { core::mem::zeroed() };
    h.msg_name = (&mut addr as *mut libc::sockaddr_nl).cast();
    h.msg_flags = libc::MSG_CTRUNC;
    // SAFETY: `h` names a live `sockaddr_nl` and has no control buffer (`CMSG_FIRSTHDR` is null).
    let meta = unsafe { batch::finish(&h, 0) };
    assert!(meta.control_truncated);
    assert!(!meta.truncated);
    assert_eq!(meta.creds, None);
}

#[test]
fn memberships_join_and_leave() {
    if !rustix::process::geteuid().is_root() {
        crate::testing::skip("joining USERSOCK groups needs root");
        return;
    }
    let (a, b) = pair();
    b.add_membership(5).unwrap();
    b.add_membership(7).unwrap();
    assert_eq!(b.memberships().unwrap(), [5, 7]);
    a.send_to(b"multi", NlAddr { port: b.port(), groups: 0 }).unwrap();
    let mut buf = [0u8; 16];
    b.recv(&mut buf).unwrap();
    // A multicast to group 5 (the ECONNREFUSED of the unicast part to port 0 is a USERSOCK quirk).
    let _ = a.send_to(b"group", NlAddr { port: 0, groups: crate::wire::group_mask(5).unwrap() });
    let meta = b.recv(&mut buf).unwrap();
    assert_eq!(&buf[..meta.len], b"group");
    assert_eq!(meta.from.groups, 1 << 4);
    b.drop_membership(5).unwrap();
    assert_eq!(b.memberships().unwrap(), [7]);
    assert!(b.drop_membership(9).is_ok(), "dropping a group never joined succeeds");
}

#[test]
fn connector_group_range() {
    if !rustix::process::geteuid().is_root() {
        crate::testing::skip("joining connector groups as non-root is only allowed for odd groups on 6.6+");
        return;
    }
    let s = Socket::open(Protocol::Connector).unwrap();
    s.add_membership(32).unwrap();
    assert_eq!(s.add_membership(33).unwrap_err().raw_os_error(), Some(libc::EINVAL));
    assert_eq!(s.add_membership(0).unwrap_err().raw_os_error(), Some(libc::EINVAL));
}
