//! The real plugins of /usr/lib/cni (bridge, host-local, portmap) against a pinned netns.
//!
//! Root only; skipped otherwise. Everything is private to the test: a netns it creates, a
//! bridge with a unique name, a /24 in 10.231.0.0/16 that no route uses yet, host-local's
//! dataDir in a temp dir, ipMasq off. No packet leaves the machine. A guard removes the netns,
//! the bridge, and every iptables rule and chain naming the test's container ID, even when an
//! assertion fails. The tests run one at a time (portmap's shared chains, ip_forward).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::config;
use super::invoke::{Attachment, Cni, PortMapping};
use crate::netns;

const PLUGIN_DIR: &str = "/usr/lib/cni";
const POD_PORT: u16 = 8080;
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn usable() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return false;
    }
    let have = |p: &str| Path::new(p).exists();
    if !["bridge", "host-local", "portmap"]
        .iter()
        .all(|p| have(&format!("{PLUGIN_DIR}/{p}")))
    {
        eprintln!("skipped: CNI plugins not installed in {PLUGIN_DIR}");
        return false;
    }
    if Process::new("iptables").arg("--version").output().is_err()
        || Process::new("ip").arg("-V").output().is_err()
    {
        eprintln!("skipped: needs iptables and ip");
        return false;
    }
    true
}

fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Process::new(program).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn nat_rules() -> String {
    run("iptables", &["-w", "-t", "nat", "-S"])
}

fn chains_present() -> bool {
    nat_rules().contains("-N CNI-HOSTPORT-DNAT")
}

/// Everything one test creates, removed on drop.
struct Setup {
    dir: tempfile::TempDir,
    bridge: String,
    network: String,
    subnet: (u8, String),
    container_id: String,
    pin: PathBuf,
    host_port: u16,
    shared_chains_existed: bool,
    ip_forward: String,
    server_stop: Arc<AtomicBool>,
}

impl Setup {
    fn new() -> Self {
        let r = random();
        let tag = format!("{:04x}", r & 0xffff);
        // A /24 no route on this machine uses yet.
        let n = (0..256u32)
            .map(|i| ((u32::from((r >> 16) as u8) + i) % 256) as u8)
            .find(|n| {
                run(
                    "ip",
                    &[
                        "-4",
                        "route",
                        "show",
                        "to",
                        "match",
                        &format!("10.231.{n}.1"),
                    ],
                )
                .lines()
                .all(|l| l.starts_with("default"))
            })
            .expect("a free 10.231.x.0/24");
        let host_port = (0..100u16)
            .map(|i| 31000 + ((r >> 24) as u16 % 8000) + i)
            .find(|p| TcpListener::bind((Ipv4Addr::UNSPECIFIED, *p)).is_ok())
            .expect("a free host port");
        let dir = tempfile::tempdir().unwrap();
        let pin = dir.path().join("netns");
        Setup {
            bridge: format!("fcti{tag}"),
            network: format!("fcti-{tag}"),
            subnet: (n, format!("10.231.{n}.0/24")),
            container_id: format!("fcti{:016x}", r),
            pin,
            host_port,
            shared_chains_existed: chains_present(),
            ip_forward: std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                .unwrap_or_default(),
            server_stop: Arc::new(AtomicBool::new(false)),
            dir,
        }
    }

    fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }

    fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cni/results")
    }

    fn write_conflist(&self) -> config::NetworkList {
        std::fs::create_dir_all(self.conf_dir()).unwrap();
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": self.network,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": self.subnet.1}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": self.ipam_dir()
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
            ]
        });
        std::fs::write(
            self.conf_dir().join("10-test.conflist"),
            serde_json::to_vec_pretty(&conf).unwrap(),
        )
        .unwrap();
        config::load_default_network(&self.conf_dir()).unwrap()
    }

    fn cni(&self) -> Cni {
        Cni::new(vec![PLUGIN_DIR.into()], self.cache_dir())
    }

    fn attachment(&self) -> Attachment {
        Attachment {
            container_id: self.container_id.clone(),
            netns: self.pin.clone(),
            ifname: "eth0".into(),
            args: vec![
                ("K8S_POD_NAMESPACE".into(), "test".into()),
                ("K8S_POD_NAME".into(), "pod".into()),
                (
                    "K8S_POD_INFRA_CONTAINER_ID".into(),
                    self.container_id.clone(),
                ),
                ("K8S_POD_UID".into(), "uid".into()),
            ],
            port_mappings: vec![PortMapping {
                host_port: i32::from(self.host_port),
                container_port: i32::from(POD_PORT),
                protocol: "tcp".into(),
                host_ip: String::new(),
            }],
        }
    }

    fn lease(&self, ip: IpAddr) -> PathBuf {
        self.ipam_dir().join(&self.network).join(ip.to_string())
    }

    fn rules_of_container(&self) -> Vec<String> {
        nat_rules()
            .lines()
            .filter(|l| l.contains(&self.container_id))
            .map(str::to_owned)
            .collect()
    }

    /// A tiny TCP server inside the pod: answers every connection with "hello".
    fn serve_in_pod(&self) {
        let listener = netns::run_in(&self.pin, || {
            TcpListener::bind((Ipv4Addr::UNSPECIFIED, POD_PORT))
        })
        .unwrap()
        .unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = self.server_stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        let _ = conn.write_all(b"hello");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
    }
}

/// Connects from the host and reads the greeting.
fn reach(addr: SocketAddr) -> Result<String, String> {
    let mut conn =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut got = String::new();
    conn.read_to_string(&mut got).map_err(|e| e.to_string())?;
    Ok(got)
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.server_stop.store(true, Ordering::Relaxed);
        let _ = netns::remove(&self.pin);
        let _ = Process::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(std::process::Stdio::null())
            .status();
        // portmap's rules for this container, should DEL not have run.
        let mut chains = BTreeSet::new();
        for rule in self.rules_of_container() {
            let words: Vec<&str> = rule.split_whitespace().collect();
            if let Some(target) = words
                .iter()
                .position(|w| *w == "-j")
                .and_then(|pos| words.get(pos + 1))
                .filter(|t| t.starts_with("CNI-") && !t.starts_with("CNI-HOSTPORT-"))
            {
                chains.insert(target.to_string());
            }
            // -S prints shell-quoted rules; let sh unquote the comment.
            let _ = Process::new("sh")
                .arg("-c")
                .arg(format!("iptables -w -t nat -D {}", &rule[3..]))
                .status();
        }
        for chain in chains {
            let _ = Process::new("iptables")
                .args(["-w", "-t", "nat", "-F", &chain])
                .status();
            let _ = Process::new("iptables")
                .args(["-w", "-t", "nat", "-X", &chain])
                .status();
        }
        // portmap never removes its shared chains; remove them if this test made them and
        // nobody else put a rule in them since.
        let rules = nat_rules();
        if !self.shared_chains_existed && !rules.contains("-A CNI-HOSTPORT-DNAT ") {
            for (chain, jump) in [
                (
                    "PREROUTING",
                    "-m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
                ),
                (
                    "OUTPUT",
                    "-m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
                ),
                (
                    "POSTROUTING",
                    "-m comment --comment \"CNI portfwd requiring masquerade\" -j CNI-HOSTPORT-MASQ",
                ),
            ] {
                let _ = Process::new("sh")
                    .arg("-c")
                    .arg(format!("iptables -w -t nat -D {chain} {jump} 2>/dev/null"))
                    .status();
            }
            for chain in [
                "CNI-HOSTPORT-DNAT",
                "CNI-HOSTPORT-MASQ",
                "CNI-HOSTPORT-SETMARK",
            ] {
                let _ = Process::new("iptables")
                    .args(["-w", "-t", "nat", "-F", chain])
                    .status();
                let _ = Process::new("iptables")
                    .args(["-w", "-t", "nat", "-X", chain])
                    .status();
            }
        }
        // The bridge plugin turns on forwarding for a gateway; put it back.
        if !self.ip_forward.is_empty() {
            let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", self.ip_forward.trim());
        }
    }
}

#[tokio::test]
async fn real_plugins_add_check_and_del_after_restart() {
    if !usable() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let s = Setup::new();
    let net = s.write_conflist();
    let pin = s.pin.clone();
    tokio::task::spawn_blocking(move || netns::create(&pin))
        .await
        .unwrap()
        .unwrap();
    let att = s.attachment();

    let added = s.cni().add(&net, &att).await.unwrap();
    let ip = added.pod_ips("eth0").next().expect("a pod IP");
    let IpAddr::V4(v4) = ip else {
        panic!("not IPv4: {ip}")
    };
    assert_eq!(
        v4.octets()[..3],
        [10, 231, s.subnet.0],
        "{ip} not in {}",
        s.subnet.1
    );
    assert_eq!(added.ips[0].prefix, 24);

    // Inside the pod: eth0 carries the address, lo is up.
    let (addr_out, lo_flags) = netns::run_in(&s.pin, || {
        let out = Process::new("ip")
            .args(["-o", "-4", "addr", "show", "dev", "eth0"])
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            netns::link_flags("lo").unwrap(),
        )
    })
    .unwrap();
    assert!(addr_out.contains(&format!("inet {ip}/24")), "{addr_out}");
    assert_ne!(lo_flags & libc::IFF_UP, 0, "lo is down in the pod");

    let cache_file = s
        .cache_dir()
        .join(format!("{}-{}-eth0.json", s.network, s.container_id));
    assert!(cache_file.exists());
    assert!(s.lease(ip).exists(), "no host-local lease for {ip}");
    let rules = s.rules_of_container();
    let dnat_chain = rules
        .iter()
        .find_map(|r| {
            r.split_once("-j CNI-DN-")
                .map(|(_, c)| format!("CNI-DN-{c}"))
        })
        .unwrap_or_else(|| panic!("no portmap chain for the container: {rules:?}"));
    assert!(nat_rules().contains(&format!("-N {dnat_chain}")));

    // CHECK: bridge and host-local pass. portmap 1.1.1 always also checks for an IPv6 DNAT
    // chain and fails for an IPv4-only pod (containernetworking/plugins#819, fixed in later
    // releases); kubelet never asks for CHECK, so this only matters to tools.
    let bridge_only = config::NetworkList {
        plugins: vec![net.plugins[0].clone()],
        ..net.clone()
    };
    s.cni().check(&bridge_only, &att).await.unwrap();
    if let Err(e) = s.cni().check(&net, &att).await {
        assert!(
            e.to_string().contains("\"portmap\"") && e.to_string().contains("ipv6"),
            "{e}"
        );
    }

    // The port is reachable: directly, through the host port on the bridge address, and on
    // 127.0.0.1 (portmap's snat sets route_localnet on the bridge for that).
    s.serve_in_pod();
    let gateway = IpAddr::V4(Ipv4Addr::new(10, 231, s.subnet.0, 1));
    assert_eq!(reach(SocketAddr::new(ip, POD_PORT)).as_deref(), Ok("hello"));
    assert_eq!(
        reach(SocketAddr::new(gateway, s.host_port)).as_deref(),
        Ok("hello")
    );
    let localhost = reach(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), s.host_port));
    let route_localnet = std::fs::read_to_string(format!(
        "/proc/sys/net/ipv4/conf/{}/route_localnet",
        s.bridge
    ))
    .unwrap_or_default();
    eprintln!(
        "127.0.0.1:{} -> {localhost:?}; route_localnet on {} = {}",
        s.host_port,
        s.bridge,
        route_localnet.trim()
    );
    assert_eq!(localhost.as_deref(), Ok("hello"));

    // A restarted daemon: a new Cni, only the cache to go by, and a configuration that is gone.
    std::fs::remove_dir_all(s.conf_dir()).unwrap();
    let cni = s.cni();
    let cached = cni.cached_attachments(&s.container_id).await.unwrap();
    assert_eq!(cached.len(), 1);
    assert_eq!(cached[0].network, s.network);
    let bare = Attachment {
        container_id: s.container_id.clone(),
        ifname: cached[0].attachment.ifname.clone(),
        ..Default::default()
    };
    cni.del(cached[0].network.as_str(), &bare).await.unwrap();
    assert!(!s.lease(ip).exists(), "the lease of {ip} is still there");
    assert_eq!(s.rules_of_container(), Vec::<String>::new());
    assert!(
        !nat_rules().contains(&dnat_chain),
        "{dnat_chain} is still there"
    );
    assert!(!cache_file.exists());
    assert!(
        cni.cached_attachments(&s.container_id)
            .await
            .unwrap()
            .is_empty()
    );
    cni.del(s.network.as_str(), &bare).await.unwrap();
    cni.del(&net, &att).await.unwrap();
}

#[tokio::test]
async fn real_plugins_del_releases_everything_when_the_netns_is_gone() {
    if !usable() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let s = Setup::new();
    let net = s.write_conflist();
    let pin = s.pin.clone();
    tokio::task::spawn_blocking(move || netns::create(&pin))
        .await
        .unwrap()
        .unwrap();
    let att = s.attachment();
    let added = s.cni().add(&net, &att).await.unwrap();
    let ip = added.pod_ips("eth0").next().unwrap();
    assert!(s.lease(ip).exists());

    // The pod's netns disappears first (its veth end goes with it).
    netns::remove(&s.pin).unwrap();
    s.cni().del(&net, &att).await.unwrap();
    assert!(!s.lease(ip).exists(), "the lease of {ip} is still there");
    assert_eq!(s.rules_of_container(), Vec::<String>::new());
    assert!(
        s.cni()
            .cached_attachments(&s.container_id)
            .await
            .unwrap()
            .is_empty()
    );
    // And again.
    s.cni().del(&net, &att).await.unwrap();
}
