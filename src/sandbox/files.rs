//! The pod's `resolv.conf`, `hosts` and `hostname`, written once per sandbox and bind-mounted
//! into each of its containers.

use std::io;
use std::path::Path;

use crate::cri::v1::DnsConfig;

pub const RESOLV_CONF: &str = "resolv.conf";
pub const HOSTS: &str = "hosts";
pub const HOSTNAME: &str = "hostname";

/// Writes the three files into `dir`.
pub fn write_all(dir: &Path, hostname: &str, ip: &str, dns: Option<&DnsConfig>) -> io::Result<()> {
    std::fs::write(dir.join(RESOLV_CONF), resolv_conf(dns)?)?;
    std::fs::write(dir.join(HOSTS), hosts(hostname, ip))?;
    std::fs::write(dir.join(HOSTNAME), format!("{hostname}\n"))
}

/// The pod's DNS settings; without any, the host's resolv.conf (as containerd and CRI-O do).
fn resolv_conf(dns: Option<&DnsConfig>) -> io::Result<String> {
    let dns =
        dns.filter(|d| !(d.servers.is_empty() && d.searches.is_empty() && d.options.is_empty()));
    let Some(dns) = dns else {
        return match std::fs::read_to_string("/etc/resolv.conf") {
            Ok(text) => Ok(text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(e),
        };
    };
    let mut text = String::new();
    if !dns.searches.is_empty() {
        text.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        text.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.options.is_empty() {
        text.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Ok(text)
}

fn hosts(hostname: &str, ip: &str) -> String {
    let mut text = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    if !ip.is_empty() && !hostname.is_empty() {
        text.push_str(&format!("{ip}\t{hostname}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_config_becomes_resolv_conf() {
        let dns = DnsConfig {
            servers: vec!["10.10.10.10".into()],
            searches: vec!["google.com".into()],
            options: vec!["ndots:8".into()],
        };
        let text = resolv_conf(Some(&dns)).unwrap();
        assert_eq!(
            text,
            "search google.com\nnameserver 10.10.10.10\noptions ndots:8\n"
        );
    }

    #[test]
    fn files_are_written() {
        let dir = tempfile::tempdir().unwrap();
        write_all(dir.path(), "web-0", "10.88.0.7", None).unwrap();
        let hosts = std::fs::read_to_string(dir.path().join(HOSTS)).unwrap();
        assert!(hosts.contains("10.88.0.7\tweb-0\n"));
        assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join(HOSTNAME)).unwrap(),
            "web-0\n"
        );
        assert!(dir.path().join(RESOLV_CONF).exists());
    }
}
