//! The parsers of untrusted input, each behind one function of arbitrary bytes, run the way
//! the daemon runs them. The cargo-fuzz targets in `fuzz/` call these, and the no-panic tests
//! below feed them mutations of realistic input on every `cargo test`. None may panic.

use std::io::BufReader;
use std::path::Path;

use prost::Message;

use crate::cri::v1::*;
use crate::image::hosts::parse_hosts;
use crate::image::manifest::{
    DOCKER_LIST, DOCKER_MANIFEST, Document, ImageConfig, OCI_INDEX, OCI_MANIFEST, Platform,
    parse_document, select,
};
use crate::image::unpack::{LayerContext, LayerLimits, decompressed, unpack_layer};
use crate::validate::Validate;

/// A CRI request as the gRPC codec hands it over: the first byte picks the message type, the
/// rest is its protobuf encoding; what decodes is validated.
pub fn cri_request(data: &[u8]) {
    fn check<T: Message + Default + Validate>(body: &[u8]) {
        if let Ok(request) = T::decode(body) {
            // The refusal's text goes into a gRPC header: building it must not panic either.
            let _ = request.validate().map_err(|e| e.to_string());
        }
    }
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    match kind % 24 {
        0 => check::<RunPodSandboxRequest>(body),
        1 => check::<CreateContainerRequest>(body),
        2 => check::<PullImageRequest>(body),
        3 => check::<UpdateContainerResourcesRequest>(body),
        4 => check::<UpdatePodSandboxResourcesRequest>(body),
        5 => check::<ExecSyncRequest>(body),
        6 => check::<ExecRequest>(body),
        7 => check::<AttachRequest>(body),
        8 => check::<PortForwardRequest>(body),
        9 => check::<UpdateRuntimeConfigRequest>(body),
        10 => check::<ListPodSandboxRequest>(body),
        11 => check::<ListContainersRequest>(body),
        12 => check::<ListContainerStatsRequest>(body),
        13 => check::<ListPodSandboxStatsRequest>(body),
        14 => check::<StopContainerRequest>(body),
        15 => check::<StopPodSandboxRequest>(body),
        16 => check::<ImageStatusRequest>(body),
        17 => check::<RemoveImageRequest>(body),
        18 => check::<ListImagesRequest>(body),
        19 => check::<ContainerStatusRequest>(body),
        20 => check::<PodSandboxStatusRequest>(body),
        21 => check::<ReopenContainerLogRequest>(body),
        22 => check::<StreamContainersRequest>(body),
        _ => check::<StreamPodSandboxesRequest>(body),
    }
}

/// A layer blob (gzip, zstd or plain tar, as the bytes say) unpacked into `target`, an empty
/// directory, under small caps so a fuzzer cannot fill the disk.
pub fn layer(data: &[u8], target: &Path) {
    let Ok(stream) = decompressed(BufReader::new(data)) else {
        return;
    };
    let ctx = LayerContext {
        image: "fuzz".into(),
        layer: "sha256:fuzz".into(),
    };
    let limits = LayerLimits {
        max_bytes: 16 << 20,
        max_files: 10_000,
    };
    let _ = unpack_layer(stream, target, &ctx, limits).map_err(|e| e.to_string());
}

/// A registry's `hosts.toml`.
pub fn hosts_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let path = Path::new("/etc/ferrocri/certs.d/docker.io/hosts.toml");
        let _ = parse_hosts(path, text, "docker.io").map_err(|e| e.to_string());
    }
}

/// A CDI spec file, read as YAML and as JSON, and a device of it resolved.
pub fn cdi_spec(data: &[u8]) {
    for name in ["vendor.yaml", "vendor.json"] {
        if let Ok(spec) = crate::cdi::Spec::parse(Path::new(name), data) {
            let _ = spec.vendor_class();
        }
    }
}

/// A registry's answer: a manifest or index under each content type a registry may claim,
/// this host's platform chosen from an index, and an image config.
pub fn image_documents(data: &[u8]) {
    for content_type in [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST, ""] {
        match parse_document(content_type, data) {
            Ok(Document::Index(index)) => {
                let _ = select(&index, &Platform::host()).map_err(|e| e.to_string());
            }
            Ok(Document::Manifest(manifest)) => {
                let _ = manifest.check_is_image().map_err(|e| e.to_string());
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    if let Ok(config) = ImageConfig::parse(data) {
        let _ = config.user();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic xorshift, so every run covers the same inputs without a fuzzer.
    struct Noise(u64);

    impl Noise {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }

        /// `input` with a few bytes flipped, cut, inserted or copied over from elsewhere.
        fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
            let mut out = input.to_vec();
            for _ in 0..=self.below(4) {
                let at = self.below(out.len());
                match self.below(5) {
                    0 if !out.is_empty() => out[at] ^= 1 << self.below(8),
                    1 => out.truncate(at),
                    2 => out.insert(at, self.next() as u8),
                    3 if !out.is_empty() => out[at] = [0, 0xff, 0x7f, 0x80][self.below(4)],
                    _ if out.len() > 8 => {
                        let from = self.below(out.len() - 4);
                        let chunk = out[from..from + 4].to_vec();
                        let to = self.below(out.len() - 4);
                        out[to..to + 4].copy_from_slice(&chunk);
                    }
                    _ => {}
                }
            }
            out
        }
    }

    fn pod_config() -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "web".into(),
                uid: "4f2a".into(),
                namespace: "default".into(),
                attempt: 1,
            }),
            hostname: "web".into(),
            log_directory: "/var/log/pods/default_web_4f2a".into(),
            labels: [("app".to_string(), "web".to_string())].into(),
            port_mappings: vec![PortMapping {
                protocol: 0,
                container_port: 80,
                host_port: 8080,
                host_ip: "127.0.0.1".into(),
            }],
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: "/kubepods/pod4f2a".into(),
                sysctls: [("net.ipv4.ip_forward".to_string(), "1".to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn cri_requests_survive_mutation() {
        let create = CreateContainerRequest {
            pod_sandbox_id: "a".repeat(64),
            config: Some(ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: "nginx".into(),
                    attempt: 0,
                }),
                image: Some(ImageSpec {
                    image: "nginx:1.27".into(),
                    ..Default::default()
                }),
                command: vec!["sh".into(), "-c".into(), "sleep 1".into()],
                working_dir: "/srv".into(),
                envs: vec![KeyValue {
                    key: "A".into(),
                    value: "b".into(),
                }],
                mounts: vec![Mount {
                    container_path: "/data".into(),
                    host_path: "/var/lib/data".into(),
                    ..Default::default()
                }],
                devices: vec![Device {
                    container_path: "/dev/fuse".into(),
                    host_path: "/dev/fuse".into(),
                    permissions: "rwm".into(),
                }],
                log_path: "nginx/0.log".into(),
                ..Default::default()
            }),
            sandbox_config: Some(pod_config()),
        };
        let run = RunPodSandboxRequest {
            config: Some(pod_config()),
            runtime_handler: String::new(),
        };
        let seeds = [(0u8, run.encode_to_vec()), (1u8, create.encode_to_vec())];
        let mut noise = Noise(0x5EED_0000_C0DE_0013);
        for round in 0..6000 {
            let (kind, seed) = &seeds[round % 2];
            let mut data = vec![if round % 7 == 0 {
                noise.next() as u8
            } else {
                *kind
            }];
            data.extend(noise.mutate(seed));
            cri_request(&data);
        }
    }

    /// A small layer: folders, files, links, whiteouts and odd names.
    fn layer_tar() -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut add = |path: &str, kind: tar::EntryType, body: &[u8], link: Option<&str>| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_size(body.len() as u64);
            header.set_mode(0o755);
            if let Some(link) = link {
                header.set_link_name(link).unwrap();
            }
            tar.append_data(&mut header, path, body).unwrap();
        };
        add("etc/", tar::EntryType::Directory, b"", None);
        add(
            "etc/passwd",
            tar::EntryType::Regular,
            b"root:x:0:0::/root:/bin/sh\n",
            None,
        );
        add("etc/alias", tar::EntryType::Symlink, b"", Some("passwd"));
        add("etc/hard", tar::EntryType::Link, b"", Some("etc/passwd"));
        add("etc/.wh.gone", tar::EntryType::Regular, b"", None);
        add("var/.wh..wh..opq", tar::EntryType::Regular, b"", None);
        add("bin/sh", tar::EntryType::Regular, &[0x7f; 700], None);
        tar.into_inner().unwrap()
    }

    #[test]
    fn layers_survive_mutation() {
        use std::io::Write;
        let plain = layer_tar();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gzipped = gz.finish().unwrap();
        let zstd = zstd::encode_all(&plain[..], 1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut noise = Noise(0x1A7E_4000_0000_0077);
        for round in 0..400 {
            let seed = [&plain, &gzipped, &zstd][round % 3];
            let target = dir.path().join(round.to_string());
            std::fs::create_dir(&target).unwrap();
            layer(&noise.mutate(seed), &target);
            std::fs::remove_dir_all(&target).unwrap();
        }
    }

    #[test]
    fn hosts_toml_survives_mutation() {
        let seed = br#"server = "https://registry-1.docker.io"

[host."https://mirror.example.com"]
  capabilities = ["pull", "resolve"]
  ca = "mirror-ca.pem"
  skip_verify = false
  [host."https://mirror.example.com".header]
    x-token = ["a", "b"]

[host."http://127.0.0.1:5000"]
  capabilities = ["pull"]
  override_path = true
"#;
        let mut noise = Noise(0x4057_0000_7011_0001);
        for _ in 0..4000 {
            hosts_toml(&noise.mutate(seed));
        }
    }

    #[test]
    fn cdi_specs_survive_mutation() {
        let yaml = include_bytes!("../tests/data/cdi/nvidia-ctk-0.6.0.yaml");
        let json = include_bytes!("../tests/data/cdi/intel-gpu.json");
        let seeds: [&[u8]; 2] = [yaml, json];
        let mut noise = Noise(0xCD1_0000_5EC5_0001);
        for round in 0..3000 {
            cdi_spec(&noise.mutate(seeds[round % 2]));
        }
    }

    #[test]
    fn image_documents_survive_mutation() {
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":400,"platform":{"architecture":"amd64","os":"linux","variant":"v2"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":400,"platform":{"architecture":"unknown","os":"unknown"},"annotations":{"vnd.docker.reference.type":"attestation-manifest"}}]}"#;
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:3333333333333333333333333333333333333333333333333333333333333333","size":1500},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:4444444444444444444444444444444444444444444444444444444444444444","size":700000}]}"#;
        let config = br#"{"architecture":"amd64","os":"linux","config":{"User":"1000:1000","Env":["PATH=/bin"],"Entrypoint":["/bin/sh"],"WorkingDir":"/","StopSignal":"SIGQUIT"},"rootfs":{"type":"layers","diff_ids":["sha256:5555555555555555555555555555555555555555555555555555555555555555"]}}"#;
        let seeds: [&[u8]; 3] = [index, manifest, config];
        let mut noise = Noise(0x1DE4_0000_0000_0042);
        for round in 0..3000 {
            image_documents(&noise.mutate(seeds[round % 3]));
        }
    }
}
