//! The network configuration ferrocri writes when the node has none.

use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::result::parse_cidr;

/// File name of the default configuration.
pub const DEFAULT_FILE: &str = "10-ferrocri.conflist";
/// Network name of the default configuration.
pub const DEFAULT_NETWORK: &str = "ferrocri";
/// Bridge of the default configuration.
pub const DEFAULT_BRIDGE: &str = "ferrocri0";

/// Writes `10-ferrocri.conflist` into `conf_dir` (created if missing) unless the folder already
/// holds a configuration file (`*.conflist`, `*.conf`, `*.json`, as the loader sees them; a
/// broken one counts too, so an operator's configuration is never shadowed).
///
/// `pod_subnet` is one CIDR, or an IPv4 and an IPv6 CIDR separated by a comma (dual stack).
/// Returns the configuration file in effect: the one written, or else the existing file that
/// comes first by name. The write is atomic (temp file, fsync, rename, fsync of the folder).
pub fn write_default_network(conf_dir: &Path, pod_subnet: &str) -> io::Result<PathBuf> {
    let conf = default_network(pod_subnet)?;
    std::fs::create_dir_all(conf_dir)?;
    if let Some(existing) = super::config::config_files(conf_dir)?.into_iter().next() {
        return Ok(existing);
    }
    let mut text = serde_json::to_vec_pretty(&conf)?;
    text.push(b'\n');
    // The temp name has no configuration extension, so a concurrent loader never sees it.
    let mut tmp = tempfile::Builder::new()
        .prefix(".10-ferrocri.")
        .suffix(".tmp")
        .tempfile_in(conf_dir)?;
    tmp.write_all(&text)?;
    tmp.as_file().sync_all()?;
    let path = conf_dir.join(DEFAULT_FILE);
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.persist(&path).map_err(|e| e.error)?;
    std::fs::File::open(conf_dir)?.sync_all()?;
    Ok(path)
}

/// The default configuration list for `pod_subnet`: a bridge with host-local IPAM, then
/// portmap for hostPort.
pub fn default_network(pod_subnet: &str) -> io::Result<Value> {
    let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
    let subnets: Vec<&str> = pod_subnet.split(',').map(str::trim).collect();
    if subnets.is_empty() || subnets.len() > 2 {
        return Err(invalid(format!(
            "pod subnet {pod_subnet:?}: give one CIDR, or an IPv4 and an IPv6 CIDR separated by ','"
        )));
    }
    let mut ranges = Vec::new();
    let mut routes = Vec::new();
    let mut families = Vec::new();
    for subnet in subnets {
        let (ip, prefix) = parse_cidr(subnet).map_err(|e| invalid(format!("pod subnet: {e}")))?;
        if has_host_bits(ip, prefix) {
            return Err(invalid(format!(
                "pod subnet {subnet:?} has host bits set; give the network address"
            )));
        }
        let v4 = ip.is_ipv4();
        if families.contains(&v4) {
            return Err(invalid(format!(
                "pod subnet {pod_subnet:?}: two subnets of the same address family"
            )));
        }
        families.push(v4);
        ranges.push(json!([{ "subnet": subnet }]));
        routes.push(json!({ "dst": if v4 { "0.0.0.0/0" } else { "::/0" } }));
    }
    Ok(json!({
        "cniVersion": "1.0.0",
        "name": DEFAULT_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": DEFAULT_BRIDGE,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": ranges,
                    "routes": routes,
                    "dataDir": "/var/lib/cni/networks"
                }
            },
            {
                "type": "portmap",
                "capabilities": { "portMappings": true },
                "snat": true
            }
        ]
    }))
}

fn has_host_bits(ip: IpAddr, prefix: u8) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            prefix < 32 && bits & (u32::MAX >> prefix) != 0
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            prefix < 128 && bits & (u128::MAX >> prefix) != 0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::config;

    #[test]
    fn writes_a_loadable_default_into_an_empty_folder() {
        let dir = tempfile::tempdir().unwrap();
        let conf_dir = dir.path().join("net.d");
        let path = write_default_network(&conf_dir, "10.88.0.0/16").unwrap();
        assert_eq!(path, conf_dir.join("10-ferrocri.conflist"));
        let net = config::load_default_network(&conf_dir).unwrap();
        assert_eq!(net.name, "ferrocri");
        assert_eq!(net.cni_version, "1.0.0");
        assert_eq!(
            net.plugin_types().collect::<Vec<_>>(),
            ["bridge", "portmap"]
        );
        let bridge = &net.plugins[0];
        assert_eq!(bridge["bridge"], "ferrocri0");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], true);
        assert_eq!(bridge["hairpinMode"], true);
        assert_eq!(bridge["ipam"]["type"], "host-local");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.88.0.0/16");
        assert_eq!(bridge["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(bridge["ipam"]["dataDir"], "/var/lib/cni/networks");
        assert_eq!(net.plugins[1]["capabilities"]["portMappings"], true);
        assert_eq!(net.plugins[1]["snat"], true);
        // Only the file itself: no temp file left.
        assert_eq!(std::fs::read_dir(&conf_dir).unwrap().count(), 1);
        // A second call finds it and changes nothing.
        let before = std::fs::read(&path).unwrap();
        assert_eq!(
            write_default_network(&conf_dir, "10.99.0.0/16").unwrap(),
            path
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn never_shadows_an_existing_configuration() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("README"), "notes").unwrap();
        std::fs::write(dir.path().join("99-mine.conf"), "{ broken").unwrap();
        let path = write_default_network(dir.path(), "10.88.0.0/16").unwrap();
        assert_eq!(path, dir.path().join("99-mine.conf"));
        assert!(!dir.path().join(DEFAULT_FILE).exists());
    }

    #[test]
    fn dual_stack_and_bad_subnets() {
        let conf = default_network("10.88.0.0/16, fd00:88::/64").unwrap();
        let ipam = &conf["plugins"][0]["ipam"];
        assert_eq!(ipam["ranges"][1][0]["subnet"], "fd00:88::/64");
        assert_eq!(ipam["routes"][1]["dst"], "::/0");
        for bad in [
            "10.88.0.1/16",
            "10.88.0.0",
            "10.88.0.0/16,10.89.0.0/16",
            "x/8",
            "",
        ] {
            let err = default_network(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(write_default_network(dir.path(), "nope").is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
