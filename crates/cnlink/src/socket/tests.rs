//! Socket tests over `NETLINK_USERSOCK`: unicast there needs no privilege.

use super::*;

fn pair() -> (Socket, Socket) {
    (Socket::open(Protocol::Usersock).unwrap(), Socket::open(Protocol::Usersock).unwrap())
}

#[test]
fn kernel_assigned_ports_are_distinct() {
    let (a, b) = pair();
    let (pa, pb) = (a.port_id().unwrap(), b.port_id().unwrap());
    assert_ne!(pa, 0);
    assert_ne!(pa, pb);
}

#[test]
fn unicast_with_sender_and_credentials() {
    let (a, b) = pair();
    b.set_passcred(true).unwrap();
    a.send_to(b"hello", NlAddr::port(b.port_id().unwrap())).unwrap();
    let mut buf = [0u8; 64];
    let meta = b.recv(&mut buf).unwrap();
    assert_eq!(&buf[..meta.len], b"hello");
    assert!(!meta.truncated);
    assert_eq!(meta.from, NlAddr::port(a.port_id().unwrap()));
    let creds = meta.creds.expect("SO_PASSCRED gives credentials");
    assert_eq!(creds.pid, std::process::id() as i32);
    assert_eq!(creds.uid, rustix::process::getuid().as_raw());
}

#[test]
fn truncation_is_reported() {
    let (a, b) = pair();
    a.send_to(&[7u8; 100], NlAddr::port(b.port_id().unwrap())).unwrap();
    let mut buf = [0u8; 10];
    let meta = b.recv(&mut buf).unwrap();
    assert!(meta.truncated);
    assert_eq!(meta.len, 10);
}

#[test]
fn batch_receives_several_in_order() {
    let (a, b) = pair();
    let to = NlAddr::port(b.port_id().unwrap());
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
    a.send_to(b"x", NlAddr::port(b.port_id().unwrap())).unwrap();
    assert!(b.wait_readable(Some(Duration::from_secs(5))).unwrap());
    assert_eq!(b.recv(&mut buf).unwrap().len, 1);
}

#[test]
fn receive_buffer_can_be_sized() {
    let (a, _) = pair();
    let granted = a.set_recv_buffer(1 << 20).unwrap();
    assert!(granted >= 1 << 20 || granted >= 2 * 200_000, "granted {granted}");
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
    a.send_to(b"multi", NlAddr { port: b.port_id().unwrap(), groups: 0 }).unwrap();
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
