//! Recognising containers, Kubernetes pods and systemd units in cgroup paths: a pure classifier of the lines
//! of `/proc/PID/cgroup` (cgroup v1 and v2).
//!
//! Layouts recognised (`<id>` is 64 hex digits, `<uid>` a pod uid, dashes written as `_` inside slice names):
//!
//! | runtime | path component |
//! |---|---|
//! | docker | `docker-<id>.scope` (systemd driver), `<id>` under a `docker` directory (cgroupfs driver) |
//! | containerd (CRI) | `cri-containerd-<id>.scope`, `containerd-<id>.scope`, `...slice:cri-containerd:<id>` |
//! | cri-o | `crio-<id>.scope`, `crio-<id>` (not `crio-conmon-<id>`, the monitor) |
//! | podman | `libpod-<id>.scope`, `libpod-<id>`, `libpod-payload-<id>` (not `libpod-conmon-<id>`) |
//! | CRI, unknown runtime | `<id>` under a pod directory (containerd and cri-o with the cgroupfs driver) |
//! | unknown | `<id>` anywhere else (runc's default name) |
//!
//! The innermost match wins (docker in docker runs in the inner container). A Kubernetes pod is
//! `pod<uid>` under `kubepods[/besteffort|/burstable]`, or `kubepods[-besteffort|-burstable]-pod<uid>.slice`;
//! its QoS class is `besteffort`, `burstable`, or `guaranteed` when the pod sits directly under `kubepods`.
//! A systemd unit is the first `*.service` or `*.scope` after the innermost `*.slice`; under
//! `user@UID.service` the unit is a user unit of `UID`.
//!
//! The path reported for a process is the first path that is not the root `/`, in this order: the v2 line
//! (`0::`), systemd's named hierarchy (`name=systemd`), then the v1 controllers in file order; `/` when all
//! are the root.

use serde::{Deserialize, Serialize};

use crate::procfs::parse::cgroup_lines;
use crate::BStr;

/// Who runs a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    /// Docker (moby).
    Docker,
    /// containerd through its CRI plugin.
    Containerd,
    /// CRI-O.
    CriO,
    /// Podman (libpod).
    Podman,
    /// A Kubernetes runtime whose cgroup names do not tell which (cgroupfs driver).
    Cri,
    /// A runc-style 64-hex-digit cgroup of no known runtime.
    Unknown,
}

impl Runtime {
    /// `docker`, `containerd`, `cri_o`, `podman`, `cri` or `unknown`.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri_o",
            Runtime::Podman => "podman",
            Runtime::Cri => "cri",
            Runtime::Unknown => "unknown",
        }
    }
}

/// A container a process runs in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Container {
    /// The runtime.
    pub runtime: Runtime,
    /// The container id (64 hex digits).
    pub id: Box<str>,
}

/// A Kubernetes pod's quality-of-service class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QosClass {
    /// Requests equal limits: the pod sits directly under `kubepods`.
    Guaranteed,
    /// `kubepods/burstable`.
    Burstable,
    /// `kubepods/besteffort`.
    BestEffort,
}

impl QosClass {
    /// `guaranteed`, `burstable` or `besteffort` (the cgroup names of the classes).
    pub fn name(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "guaranteed",
            QosClass::Burstable => "burstable",
            QosClass::BestEffort => "besteffort",
        }
    }
}

/// A Kubernetes pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pod {
    /// The pod uid, with dashes (the systemd driver's underscores turned back).
    pub uid: Box<str>,
    /// The QoS class.
    pub qos: QosClass,
}

/// A systemd unit and slice.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SystemdUnit {
    /// The unit (`nginx.service`, `session-3.scope`, `docker-<id>.scope`), if the path names one.
    pub unit: Option<Box<str>>,
    /// The innermost slice (`system.slice`, `user-1000.slice`).
    pub slice: Option<Box<str>>,
    /// Set when `unit` is a user unit run by `user@UID.service`: the UID.
    pub user: Option<u32>,
}

/// What a cgroup path says.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct PathClass {
    /// The container, if any.
    pub container: Option<Container>,
    /// The Kubernetes pod, if any.
    pub pod: Option<Pod>,
    /// The systemd unit and slice, if any.
    pub systemd: Option<SystemdUnit>,
}

/// A process's cgroups: the path to show and what it says. Shared by every process with the same
/// `/proc/PID/cgroup` contents.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct CgroupInfo {
    /// The file as read (every hierarchy's line).
    pub raw: BStr,
    /// The path reported (see the module doc for which line).
    pub path: BStr,
    /// The file has a cgroup v2 line (`0::`).
    pub v2: bool,
    /// The file has cgroup v1 lines.
    pub v1: bool,
    /// The file was cut at the read limit.
    pub truncated: bool,
    /// What the paths say.
    pub class: PathClass,
}

impl CgroupInfo {
    /// Reads the lines of a `/proc/PID/cgroup` file (at most `max_lines`).
    pub fn parse(raw: &[u8], truncated: bool, max_lines: usize) -> CgroupInfo {
        let mut v1 = false;
        let mut v2 = false;
        // Candidates in report order: v2, name=systemd, then the v1 controllers.
        let mut ordered: Vec<(u8, &[u8])> = Vec::new();
        for line in cgroup_lines(raw, max_lines) {
            let rank = if line.hierarchy == 0 && line.controllers.is_empty() {
                v2 = true;
                0
            } else if line.controllers == b"name=systemd" {
                v1 = true;
                1
            } else {
                v1 = true;
                2
            };
            ordered.push((rank, line.path));
        }
        ordered.sort_by_key(|&(rank, _)| rank);
        let path = ordered.iter().map(|&(_, p)| p).find(|p| *p != b"/").unwrap_or(b"/");
        let mut class = classify_path(path);
        if class.container.is_none() {
            class.container = ordered.iter().find_map(|&(_, p)| classify_path(p).container);
        }
        if class.pod.is_none() {
            class.pod = ordered.iter().find_map(|&(_, p)| classify_path(p).pod);
        }
        CgroupInfo { raw: BStr::from(raw), path: BStr::from(path), v1, v2, truncated, class }
    }
}

/// 64 hex digits.
fn container_id(s: &str) -> Option<&str> {
    (s.len() == 64 && s.bytes().all(|c| c.is_ascii_hexdigit())).then_some(s)
}

/// `prefix<id>suffix` with a 64-hex id.
fn wrapped<'a>(c: &'a str, prefix: &str, suffix: &str) -> Option<&'a str> {
    container_id(c.strip_prefix(prefix)?.strip_suffix(suffix)?)
}

/// The container a single path component names, given the component before it.
fn component_container(c: &str, prev: &str, in_pod: bool) -> Option<Container> {
    let found = |runtime, id: &str| Some(Container { runtime, id: id.into() });
    if let Some(id) = wrapped(c, "docker-", ".scope") {
        return found(Runtime::Docker, id);
    }
    if let Some(id) = wrapped(c, "cri-containerd-", ".scope").or_else(|| wrapped(c, "containerd-", ".scope")) {
        return found(Runtime::Containerd, id);
    }
    if let Some((_, id)) = c.split_once(":cri-containerd:") {
        return container_id(id).and_then(|id| found(Runtime::Containerd, id));
    }
    if let Some(id) = wrapped(c, "crio-", ".scope").or_else(|| wrapped(c, "crio-", "")) {
        return found(Runtime::CriO, id);
    }
    for prefix in ["libpod-payload-", "libpod-"] {
        if let Some(id) = wrapped(c, prefix, ".scope").or_else(|| wrapped(c, prefix, "")) {
            return found(Runtime::Podman, id);
        }
    }
    let id = container_id(c)?;
    let runtime = match prev {
        "docker" => Runtime::Docker,
        _ if in_pod => Runtime::Cri,
        _ => Runtime::Unknown,
    };
    found(runtime, id)
}

/// The pod a component names: `pod<uid>` (cgroupfs) or `kubepods[-qos]-pod<uid>.slice` (systemd).
fn component_pod(c: &str) -> Option<(Box<str>, Option<QosClass>)> {
    let c = c.split_once(':').map_or(c, |(head, _)| head);
    let uid_ok = |u: &str| !u.is_empty() && u.len() <= 64 && u.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if let Some(uid) = c.strip_prefix("pod") {
        return uid_ok(uid).then(|| (uid.into(), None));
    }
    let rest = c.strip_prefix("kubepods-")?.strip_suffix(".slice")?;
    let (qos, uid) = if let Some(u) = rest.strip_prefix("besteffort-pod") {
        (QosClass::BestEffort, u)
    } else if let Some(u) = rest.strip_prefix("burstable-pod") {
        (QosClass::Burstable, u)
    } else {
        (QosClass::Guaranteed, rest.strip_prefix("pod")?)
    };
    let uid = uid.replace('_', "-");
    uid_ok(&uid).then(|| (uid.into(), Some(qos)))
}

/// The QoS class a component names (`besteffort`, `kubepods-burstable.slice`, ...).
fn component_qos(c: &str) -> Option<QosClass> {
    match c {
        "besteffort" | "kubepods-besteffort.slice" => Some(QosClass::BestEffort),
        "burstable" | "kubepods-burstable.slice" => Some(QosClass::Burstable),
        _ => None,
    }
}

/// Classifies one cgroup path.
pub fn classify_path(path: &[u8]) -> PathClass {
    let text = String::from_utf8_lossy(path);
    let mut class = PathClass::default();
    let mut in_kube = false;
    let mut qos = None;
    let mut prev = "";
    let mut unit: Option<&str> = None;
    let mut slice: Option<&str> = None;
    let mut user = None;
    let mut user_of_unit = None;
    for c in text.split('/').filter(|c| !c.is_empty()) {
        if c == "kubepods" || c.starts_with("kubepods.") || c.starts_with("kubepods-") {
            in_kube = true;
        }
        if in_kube && qos.is_none() {
            qos = component_qos(c);
        }
        if in_kube && class.pod.is_none() {
            if let Some((uid, named_qos)) = component_pod(c) {
                let qos = named_qos.or(qos).unwrap_or(QosClass::Guaranteed);
                class.pod = Some(Pod { uid, qos });
            }
        }
        if let Some(found) = component_container(c, prev, class.pod.is_some()) {
            class.container = Some(found);
        }
        if c.ends_with(".slice") && !c.contains(':') {
            slice = Some(c);
            unit = None;
        } else if (c.ends_with(".service") || c.ends_with(".scope")) && unit.is_none() {
            unit = Some(c);
            user_of_unit = user;
            if let Some(uid) = c.strip_prefix("user@").and_then(|r| r.strip_suffix(".service")) {
                user = uid.parse().ok();
            }
        }
        prev = c;
    }
    if unit.is_some() || slice.is_some() {
        class.systemd =
            Some(SystemdUnit { unit: unit.map(Into::into), slice: slice.map(Into::into), user: user_of_unit });
    }
    class
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(path: &str) -> Option<(Runtime, String)> {
        classify_path(path.as_bytes()).container.map(|c| (c.runtime, c.id.to_string()))
    }

    const ID: &str = "7951fb549ab99e0722a949b6c121634e1f3a36b5bacbe5392991e3b12251e6b8";

    // Layouts from falcosecurity/libs, test/libsinsp_e2e/container/container_cgroup.cpp (container id tests for
    // containerd, cri-o and docker with the cgroupfs and systemd drivers).
    #[test]
    fn falco_layouts() {
        assert_eq!(
            container(
                "/kubepods/besteffort/podac04f3f2-1f2c-11e9-b015-1ebee232acfa/\
                 605439acbd4fb18c145069289094b17f17e0cfa938f78012d4960bc797305f22"
            ),
            Some((Runtime::Cri, "605439acbd4fb18c145069289094b17f17e0cfa938f78012d4960bc797305f22".into()))
        );
        let crio_fs = "/kubepods/besteffort/pod63b3ebfc-2890-11e9-8154-16bf8ef8d9dc/\
                       crio-73bfe475650de66df8e2affdc98d440dcbe84f8df83b6f75a68a82eb7026136a";
        assert_eq!(container(crio_fs).unwrap().0, Runtime::CriO);
        let crio_sd = "/kubepods.slice/kubepods-besteffort.slice/\
                       kubepods-besteffort-pod63b3ebfc_2890_11e9_8154_16bf8ef8d9dc.slice/\
                       crio-17d8c9eacc629f9945f304d89e9708c0c619649a484a215b240628319548a09f.scope";
        let c = classify_path(crio_sd.as_bytes());
        assert_eq!(c.container.unwrap().runtime, Runtime::CriO);
        assert_eq!(c.pod, Some(Pod { uid: "63b3ebfc-2890-11e9-8154-16bf8ef8d9dc".into(), qos: QosClass::BestEffort }));
        assert_eq!(container(&format!("/docker/{ID}")), Some((Runtime::Docker, ID.into())));
        assert_eq!(container(&format!("/docker.slice/docker-{ID}.scope")), Some((Runtime::Docker, ID.into())));
        let odd = "/kubepods-burstable-podbd12dd3393227d950605a2444b13c27a.slice:cri-containerd:\
                   d52db56a9c80d536a91354c0951c061187ca46249e64865a12703003d8f42366";
        assert_eq!(container(odd).unwrap().0, Runtime::Containerd);
    }

    // Podman layouts from falcosecurity/libs, userspace/libsinsp/container_engine/docker/podman.cpp
    // (`/libpod-<id>.scope`, `.scope/container`, `/libpod-<id>`, `libpod-payload-`); the rootless path is
    // podman's systemd layout under the user's manager.
    #[test]
    fn podman_layouts() {
        assert_eq!(container(&format!("/machine.slice/libpod-{ID}.scope")).unwrap().0, Runtime::Podman);
        assert_eq!(container(&format!("/machine.slice/libpod-{ID}.scope/container")).unwrap().0, Runtime::Podman);
        assert_eq!(container(&format!("/libpod_parent/libpod-{ID}")).unwrap().0, Runtime::Podman);
        assert_eq!(container(&format!("/libpod-payload-{ID}")).unwrap().0, Runtime::Podman);
        assert_eq!(container(&format!("/machine.slice/libpod-conmon-{ID}.scope")), None);
        let rootless = format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope");
        let c = classify_path(rootless.as_bytes());
        assert_eq!(c.container.unwrap().runtime, Runtime::Podman);
        let sd = c.systemd.unwrap();
        assert_eq!((sd.unit.as_deref(), sd.user), (Some(&*format!("libpod-{ID}.scope")), Some(1000)));
    }

    // Whole /proc/PID/cgroup files from neuvector/neuvector, share/system/cgroup_test.go (Debian, CentOS,
    // Ubuntu, RancherOS docker-in-docker, Kubernetes cgroupfs and systemd drivers, cri-o 1.17/1.19,
    // containerd 1.2/1.4, Bottlerocket with a v2 line, host processes).
    #[test]
    fn neuvector_files() {
        let centos = "10:devices:/system.slice/docker-9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d.scope\n\
            2:cpuacct,cpu:/system.slice/docker-9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d.scope\n\
            1:name=systemd:/system.slice/docker-9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d.scope\n";
        let info = CgroupInfo::parse(centos.as_bytes(), false, 64);
        assert!(info.v1 && !info.v2);
        let c = info.class.container.unwrap();
        assert_eq!(
            (c.runtime, &*c.id),
            (Runtime::Docker, "9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d")
        );
        let sd = info.class.systemd.unwrap();
        assert_eq!(sd.slice.as_deref(), Some("system.slice"));

        let debian = "4:memory:/4f797c539e6c745de61a93ca3ff892358ecbcaccd8414d5db545c38428142970\n\
            2:cpu:/4f797c539e6c745de61a93ca3ff892358ecbcaccd8414d5db545c38428142970\n";
        let c = CgroupInfo::parse(debian.as_bytes(), false, 64).class.container.unwrap();
        assert_eq!(c.runtime, Runtime::Unknown);

        let rancher = "9:name=systemd:/docker/a9a5ad238e59234193ee7ec3fcff5e735b3708ea1068826952255b69e3cfa413/docker/ec08435e04266c5ba381fccbb829f626d11d8ddf5f8f547263c7a2d79ab4787a\n";
        let c = CgroupInfo::parse(rancher.as_bytes(), false, 64).class.container.unwrap();
        assert_eq!(&*c.id, "ec08435e04266c5ba381fccbb829f626d11d8ddf5f8f547263c7a2d79ab4787a");

        let kube_fs = "6:pids:/kubepods/besteffort/pod74ba62da-1a3d-11e7-bb11-080027cb0e22/cb1eadb7abe3a6545e9856411207073277838e1bdc003337c2f8685faeedc32c\n\
            3:rdma:/\n";
        let info = CgroupInfo::parse(kube_fs.as_bytes(), false, 64);
        assert_eq!(info.class.pod.as_ref().unwrap().uid.as_ref(), "74ba62da-1a3d-11e7-bb11-080027cb0e22");
        assert_eq!(info.class.pod.unwrap().qos, QosClass::BestEffort);
        assert_eq!(info.class.container.unwrap().runtime, Runtime::Cri);
        assert!(info.path.as_bytes().starts_with(b"/kubepods/besteffort/"));

        let kube_docker_sd = "1:name=systemd:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod045b1e35_7f13_11e7_ac42_0050568ffca0.slice/docker-b5b6f2da8008be266864f896f93789762b2ce50792114a5c5f2cc3315af0bc70.scope";
        let info = CgroupInfo::parse(kube_docker_sd.as_bytes(), false, 64);
        assert_eq!(info.class.pod.unwrap().uid.as_ref(), "045b1e35-7f13-11e7-ac42-0050568ffca0");
        assert_eq!(info.class.container.unwrap().runtime, Runtime::Docker);

        let crio_static = "9:pids:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod487a0dc6dccaeefbcfedba7a7ce1ca18.slice/crio-7a1fd6fe8cdfbd44dc78c4cc85dad7031eaab4365801684cad0aabdeaf863f9e.scope";
        let info = CgroupInfo::parse(crio_static.as_bytes(), false, 64);
        assert_eq!(
            info.class.pod,
            Some(Pod { uid: "487a0dc6dccaeefbcfedba7a7ce1ca18".into(), qos: QosClass::Burstable })
        );
        assert_eq!(info.class.container.unwrap().runtime, Runtime::CriO);

        let bottlerocket = "8:pids:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-poddd1bf9d1_241d_47f5_8e25_12de83135812.slice/cri-containerd-f45298cd514d1930c4fe3afc4412e59547f7e3148fddd22ca33cefce046eb830.scope\n\
            0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-poddd1bf9d1_241d_47f5_8e25_12de83135812.slice/cri-containerd-f45298cd514d1930c4fe3afc4412e59547f7e3148fddd22ca33cefce046eb830.scope";
        let info = CgroupInfo::parse(bottlerocket.as_bytes(), false, 64);
        assert!(info.v1 && info.v2);
        assert_eq!(info.class.container.unwrap().runtime, Runtime::Containerd);

        let containerd_14 = "4:memory:/system.slice/containerd.service/kubepods-besteffort-pod2105e389_7471_476e_a50f_6074cef29bbd.slice:cri-containerd:d3d8ccf5cca91931c6285c1d7472c413dd5a7700fddc0aa9f89a9ac7008b003e\n";
        let c = CgroupInfo::parse(containerd_14.as_bytes(), false, 64).class.container.unwrap();
        assert_eq!((c.runtime, &c.id[..8]), (Runtime::Containerd, "d3d8ccf5"));

        let host = "13:name=systemd:/\n12:pids:/\n1:cpuset:/\n";
        let info = CgroupInfo::parse(host.as_bytes(), false, 64);
        assert_eq!((info.path.as_bytes(), info.class), (&b"/"[..], PathClass::default()));

        let old_session = "13:name=systemd:/user/1000.user/c2.session\n12:pids:/\n";
        let info = CgroupInfo::parse(old_session.as_bytes(), false, 64);
        assert_eq!(info.class.container, None);
        assert_eq!(info.path.as_bytes(), b"/user/1000.user/c2.session");
    }

    #[test]
    fn guaranteed_pods_and_kubelet_qos_layouts() {
        // Layouts from the kubelet's QoS cgroup hierarchy (CJLove/rt-operator notes/cgroupv1_notes.md): a
        // guaranteed pod sits directly under kubepods.
        let fs = format!("/kubepods/pod0f5cbd1b-5e57-4d4b-a1a0-1b4d2d1c6e11/{ID}");
        let c = classify_path(fs.as_bytes());
        assert_eq!(c.pod.unwrap().qos, QosClass::Guaranteed);
        let sd = format!("/kubepods.slice/kubepods-pod0f5cbd1b_5e57_4d4b_a1a0_1b4d2d1c6e11.slice/crio-{ID}.scope");
        let c = classify_path(sd.as_bytes());
        assert_eq!(c.pod, Some(Pod { uid: "0f5cbd1b-5e57-4d4b-a1a0-1b4d2d1c6e11".into(), qos: QosClass::Guaranteed }));
    }

    #[test]
    fn systemd_units() {
        let unit = |p: &str| classify_path(p.as_bytes()).systemd;
        let sd = unit("/system.slice/nginx.service").unwrap();
        assert_eq!(
            (sd.unit.as_deref(), sd.slice.as_deref(), sd.user),
            (Some("nginx.service"), Some("system.slice"), None)
        );
        let sd = unit("/user.slice/user-1000.slice/session-3.scope").unwrap();
        assert_eq!((sd.unit.as_deref(), sd.slice.as_deref()), (Some("session-3.scope"), Some("user-1000.slice")));
        let sd = unit("/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service").unwrap();
        assert_eq!(
            (sd.unit.as_deref(), sd.slice.as_deref(), sd.user),
            (Some("foo.service"), Some("app.slice"), Some(1000))
        );
        let sd = unit("/user.slice/user-1000.slice/user@1000.service/init.scope").unwrap();
        assert_eq!((sd.unit.as_deref(), sd.user), (Some("user@1000.service"), None));
        // A delegated subtree below a unit, and systemd in a container: the unit is the outer one.
        let sd = unit("/system.slice/foo.service/worker/1").unwrap();
        assert_eq!(sd.unit.as_deref(), Some("foo.service"));
        let sd = unit(&format!("/system.slice/docker-{ID}.scope/init.scope")).unwrap();
        assert_eq!(sd.unit.as_deref(), Some(&*format!("docker-{ID}.scope")));
        assert_eq!(unit("/init.scope").unwrap().unit.as_deref(), Some("init.scope"));
        assert_eq!(unit("/"), None);
        assert_eq!(unit("/process_api/4b8f347c2bf147a3f391fc058654efb3"), None);
    }

    #[test]
    fn hostile_paths_are_harmless() {
        for p in [
            &b""[..],
            b"/",
            b"//////",
            b"/\xff\xfe/docker-\x00.scope",
            b":::",
            b"/kubepods/pod/",
            b"/kubepods-pod.slice",
        ] {
            let c = classify_path(p);
            assert_eq!(c.container, None);
        }
        let info = CgroupInfo::parse(b"garbage\n0::\n::::\n", false, 64);
        assert_eq!(info.path.as_bytes(), b"");
        let long = "/a".repeat(100_000);
        assert_eq!(classify_path(long.as_bytes()).container, None);
        // Only max_lines lines are looked at.
        let many = "1:pids:/x\n".repeat(1000);
        let info = CgroupInfo::parse(many.as_bytes(), false, 3);
        assert_eq!(info.path.as_bytes(), b"/x");
    }
}
