//! The async client over real NETLINK_USERSOCK sockets: every op of `AsyncBusClient`, an async agent answering
//! async requests, group fan-out, notifications and refusals; and a bus of an untrusted uid is refused.
#![cfg(feature = "tokio")]

mod common;

use std::time::Duration;

use cnlink::wire::CbId;
use cnlink_bus::tokio::AsyncBusClient;
use cnlink_bus::wire::{CtlMsg, NotifyRange};
use cnlink_bus::BusOptions;
use common::*;

const T: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_agent_and_requester_through_the_bus() {
    let h = start_bus(BusOptions::default());
    let port = h.bus().port();
    let id = CbId::new(40, 1);

    // A watcher asks (historically) to hear about ids in idx [40, 41) and val [0, 16): both must match.
    let mut watcher = AsyncBusClient::connect(port).unwrap();
    let req = CtlMsg {
        group: 7,
        idx: vec![NotifyRange { first: 40, range: 1 }],
        val: vec![NotifyRange { first: 0, range: 16 }],
    };
    watcher.notify(&req).await.unwrap();

    // An async agent registers the id and answers with the documents' rule, upper-casing the payload.
    let mut agent = AsyncBusClient::connect(port).unwrap();
    agent.register(id, "upper").await.unwrap();
    let agent_port = agent.port();
    let served = tokio::spawn(async move {
        for _ in 0..5 {
            let m = agent.recv().await.unwrap().into_message().unwrap();
            assert_eq!(m.hdr.id, id);
            agent.reply(&m, &m.data.to_ascii_uppercase()).unwrap();
        }
        agent.unregister(id).await.unwrap();
        agent
    });

    let added = tokio::time::timeout(T, watcher.recv()).await.unwrap().unwrap().into_message().unwrap();
    assert_eq!((added.hdr.id, added.hdr.ack), (id, 0), "registration notified with ack 0");

    let mut c = AsyncBusClient::connect(port).unwrap();
    let listed = c.list().await.unwrap();
    assert!(listed.iter().any(|e| e.id == id && e.port == agent_port && e.name == "upper" && e.group == 40));
    for i in 0..5u8 {
        let payload = [b'a' + i; 4];
        let r = c.request(id, &payload, T).await.unwrap();
        assert_eq!(r.data, payload.to_ascii_uppercase());
        assert_eq!(r.hdr.id, id);
    }
    let agent = served.await.unwrap();
    let removed = tokio::time::timeout(T, watcher.recv()).await.unwrap().unwrap().into_message().unwrap();
    assert_eq!((removed.hdr.id, removed.hdr.ack), (id, 1), "unregistration notified with ack 1");

    // Group send: a joined subscriber gets it; after leaving, nobody listens on the group: ESRCH.
    let mut sub = AsyncBusClient::connect(port).unwrap();
    sub.join(90).await.unwrap();
    c.send_group(90, CbId::new(90, 2), b"hello").await.unwrap();
    let m = tokio::time::timeout(T, sub.recv()).await.unwrap().unwrap().into_message().unwrap();
    assert_eq!((m.hdr.id, &m.data[..]), (CbId::new(90, 2), &b"hello"[..]));
    sub.leave(90).await.unwrap();
    let err = c.send_group(90, CbId::new(90, 2), b"again").await.unwrap_err();
    assert_eq!(err.errno(), Some(libc::ESRCH as u32));

    // The id is gone: like the kernel, the bus drops a message nobody registered for, and counts it.
    let err = c.request(id, b"x", Duration::from_millis(100)).await.unwrap_err();
    assert!(matches!(err, cnlink_bus::ClientError::Connector(cnlink::Error::Timeout(_))), "{err}");

    // Counters are named.
    let stats = c.stats().await.unwrap();
    let get = |name: &str| stats.iter().find(|(n, _)| n == name).map(|s| s.1);
    assert_eq!(get("unroutable"), Some(1), "{stats:?}");
    assert_eq!(get("notifications"), Some(2), "{stats:?}");
    assert_eq!(get("replies_routed"), Some(5), "{stats:?}");
    drop(agent);
}

#[tokio::test]
async fn a_bus_of_an_untrusted_uid_is_refused_and_named() {
    let h = start_bus(BusOptions::default());
    let port = h.bus().port();
    let me = rustix::process::getuid().as_raw();
    let mut c = AsyncBusClient::connect(port).unwrap();
    // Trust only some other user: the real bus (run by us) now looks like an impostor.
    c.set_bus_uids(&[me.wrapping_add(4242)]);
    let err = c.register(CbId::new(41, 1), "refused").await.unwrap_err();
    let pid = std::process::id() as i32;
    assert!(
        matches!(err, cnlink_bus::ClientError::Connector(cnlink::Error::UntrustedPeer { uid: Some(u), pid: Some(p), .. }) if u == me && p == pid),
        "{err:?}"
    );
    assert_eq!(c.counters().rejected, 1);
    // Trusting our own uid again, the same bus is answered.
    c.set_bus_uids(&[me]);
    assert!(c.stats().await.is_ok());
}
