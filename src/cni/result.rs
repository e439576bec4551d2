//! Reading the addresses out of a CNI result, whatever spec version wrote it.
//!
//! Two shapes exist: 0.1.0/0.2.0 (`ip4`/`ip6` objects) and 0.3.0 onwards (`interfaces[]` and
//! `ips[]`, where `ips[].interface` is an index into `interfaces[]`; 0.3.x/0.4.0 add a
//! `version` field to each IP that 1.0.0 dropped). The shape is chosen by content, not by the
//! `cniVersion` string, so a plugin that mislabels its output is still understood.

use std::net::IpAddr;

use serde_json::Value;

/// One address a network attachment gave the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    pub address: IpAddr,
    pub prefix: u8,
    pub gateway: Option<IpAddr>,
    /// Name of the interface the address is on, when the result says.
    pub interface: Option<String>,
}

/// Parses `10.88.0.5/16` (or `fd00::5/64`).
pub fn parse_cidr(text: &str) -> Result<(IpAddr, u8), String> {
    let (ip, prefix) = text
        .split_once('/')
        .ok_or_else(|| format!("address {text:?} has no /prefix"))?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("address {text:?} is not an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| format!("address {text:?} has a prefix outside 0..={max}"))?;
    Ok((ip, prefix))
}

fn parse_ip(value: Option<&Value>, what: &str) -> Result<Option<IpAddr>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| format!("{what} {s:?} is not an IP address")),
        Some(other) => Err(format!("{what} is not a string: {other}")),
    }
}

/// The addresses in a CNI result (any version).
pub fn parse_ips(result: &Value) -> Result<Vec<IpConfig>, String> {
    let Some(obj) = result.as_object() else {
        return Err("the result is not a JSON object".into());
    };
    if obj.contains_key("ip4") || obj.contains_key("ip6") {
        return parse_legacy(obj);
    }
    let interfaces = match obj.get("interfaces") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(list)) => list.as_slice(),
        Some(_) => return Err("`interfaces` is not an array".into()),
    };
    let ips = match obj.get("ips") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err("`ips` is not an array".into()),
    };
    ips.iter()
        .enumerate()
        .map(|(n, ip)| {
            let address = ip
                .get("address")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("ips[{n}] has no `address`"))?;
            let (address, prefix) = parse_cidr(address).map_err(|e| format!("ips[{n}]: {e}"))?;
            let gateway =
                parse_ip(ip.get("gateway"), "gateway").map_err(|e| format!("ips[{n}]: {e}"))?;
            let interface = match ip.get("interface") {
                None | Some(Value::Null) => None,
                Some(idx) => {
                    let i = idx
                        .as_u64()
                        .ok_or_else(|| format!("ips[{n}].interface is not an index: {idx}"))?;
                    let iface = interfaces.get(i as usize).ok_or_else(|| {
                        format!(
                            "ips[{n}].interface is {i} but there are {} interfaces",
                            interfaces.len()
                        )
                    })?;
                    iface.get("name").and_then(Value::as_str).map(str::to_owned)
                }
            };
            Ok(IpConfig {
                address,
                prefix,
                gateway,
                interface,
            })
        })
        .collect()
}

/// 0.1.0 / 0.2.0: `{"ip4": {"ip": "10.1.0.5/16", "gateway": ...}, "ip6": {...}}`.
fn parse_legacy(obj: &serde_json::Map<String, Value>) -> Result<Vec<IpConfig>, String> {
    let mut out = Vec::new();
    for key in ["ip4", "ip6"] {
        let Some(ipc) = obj.get(key).filter(|v| !v.is_null()) else {
            continue;
        };
        let ip = ipc
            .get("ip")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("`{key}` has no `ip`"))?;
        let (address, prefix) = parse_cidr(ip).map_err(|e| format!("{key}: {e}"))?;
        let gateway = parse_ip(ipc.get("gateway"), "gateway").map_err(|e| format!("{key}: {e}"))?;
        out.push(IpConfig {
            address,
            prefix,
            gateway,
            interface: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn v1_0_0_result() {
        let r = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"},
                {"name": "veth1234", "mac": "aa:bb:cc:dd:ee:02"},
                {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/run/netns/x"}
            ],
            "ips": [
                {"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 2},
                {"address": "fd00:88::5/64", "interface": 2}
            ],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {}
        });
        let ips = parse_ips(&r).unwrap();
        assert_eq!(
            ips,
            vec![
                IpConfig {
                    address: "10.88.0.5".parse().unwrap(),
                    prefix: 16,
                    gateway: Some("10.88.0.1".parse().unwrap()),
                    interface: Some("eth0".into()),
                },
                IpConfig {
                    address: "fd00:88::5".parse().unwrap(),
                    prefix: 64,
                    gateway: None,
                    interface: Some("eth0".into()),
                },
            ]
        );
    }

    #[test]
    fn v0_4_0_result_with_version_field_and_no_interface() {
        let r = json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "eth0", "sandbox": "/proc/1/ns/net"}],
            "ips": [
                {"version": "4", "address": "10.1.2.3/24", "gateway": "10.1.2.1", "interface": 0},
                {"version": "4", "address": "192.168.5.6/32"}
            ],
            "dns": {}
        });
        let ips = parse_ips(&r).unwrap();
        assert_eq!(ips.len(), 2);
        assert_eq!(ips[0].address, "10.1.2.3".parse::<IpAddr>().unwrap());
        assert_eq!(ips[0].prefix, 24);
        assert_eq!(ips[0].interface.as_deref(), Some("eth0"));
        assert_eq!(ips[1].prefix, 32);
        assert_eq!(ips[1].interface, None);
    }

    #[test]
    fn v0_2_0_result() {
        let r = json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.9.0.7/24", "gateway": "10.9.0.1"}});
        let ips = parse_ips(&r).unwrap();
        assert_eq!(ips.len(), 1);
        assert_eq!(ips[0].address, "10.9.0.7".parse::<IpAddr>().unwrap());
        assert_eq!(ips[0].gateway, Some("10.9.0.1".parse().unwrap()));
    }

    #[test]
    fn results_without_ips_are_empty_and_bad_ones_are_explained() {
        assert_eq!(parse_ips(&json!({"cniVersion": "1.0.0"})).unwrap(), vec![]);
        let err = parse_ips(&json!({"ips": [{"address": "10.0.0.1"}]})).unwrap_err();
        assert!(err.contains("no /prefix"), "{err}");
        let err =
            parse_ips(&json!({"ips": [{"address": "10.0.0.1/8", "interface": 3}]})).unwrap_err();
        assert!(err.contains("0 interfaces"), "{err}");
        assert!(parse_cidr("10.0.0.1/33").is_err());
        assert!(parse_cidr("fd00::1/128").is_ok());
        assert!(parse_ips(&json!("x")).is_err());
    }
}
