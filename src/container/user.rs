//! Who a container runs as: the CRI security context or the image's `User`, with names
//! resolved in the image's own /etc/passwd and /etc/group (read from its layers, top-most
//! layer first), as Docker and containerd do.

use std::path::{Path, PathBuf};

/// The resolved identity of a container process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// What the CRI asked for.
#[derive(Debug, Clone, Default)]
pub struct Requested {
    pub run_as_user: Option<i64>,
    pub run_as_username: String,
    pub run_as_group: Option<i64>,
    pub supplemental_groups: Vec<i64>,
    /// Strict: only the groups asked for, not the image's /etc/group memberships.
    pub strict_groups: bool,
}

#[derive(Debug)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

#[derive(Debug)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolves the identity. `image_user` is the image config's `User` (`name`, `uid`,
/// `name:group`, `uid:gid`); `layers` are the unpacked layers, top-most first.
pub fn resolve(
    requested: &Requested,
    image_user: &str,
    layers: &[PathBuf],
) -> Result<Identity, String> {
    if requested.run_as_group.is_some()
        && requested.run_as_user.is_none()
        && requested.run_as_username.is_empty()
    {
        return Err("run_as_group needs run_as_user or run_as_username".into());
    }
    let passwd = read_image_file(layers, "etc/passwd")
        .map(|t| parse_passwd(&t))
        .unwrap_or_default();
    let groups = read_image_file(layers, "etc/group")
        .map(|t| parse_group(&t))
        .unwrap_or_default();
    let (image_name, image_group) = match image_user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (image_user, None),
    };
    // The CRI's user wins over the image's; the image's group only goes with the image's user.
    let (user, group): (String, Option<String>) = if let Some(uid) = requested.run_as_user {
        (uid.to_string(), None)
    } else if !requested.run_as_username.is_empty() {
        (requested.run_as_username.clone(), None)
    } else {
        (image_name.to_owned(), image_group.map(str::to_owned))
    };
    let (uid, primary_gid, name) = find_user(&user, &passwd)?;
    let gid = if let Some(gid) = requested.run_as_group {
        to_id(gid, "run_as_group")?
    } else if let Some(group) = group.filter(|g| !g.is_empty()) {
        match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|g| g.name == group)
                .map(|g| g.gid)
                .ok_or_else(|| format!("group {group:?} is not in the image's /etc/group"))?,
        }
    } else {
        primary_gid
    };
    let groups = additional_groups(requested, name.as_deref(), &groups, gid)?;
    Ok(Identity { uid, gid, groups })
}

/// A user by uid or name: uid, primary gid and name (when /etc/passwd has it). A uid need
/// not be in the image's /etc/passwd; a name must.
fn find_user(user: &str, passwd: &[PasswdEntry]) -> Result<(u32, u32, Option<String>), String> {
    Ok(match user.parse::<u32>() {
        Ok(uid) => {
            let entry = passwd.iter().find(|p| p.uid == uid);
            (
                uid,
                entry.map_or(0, |p| p.gid),
                entry.map(|p| p.name.clone()),
            )
        }
        Err(_) if user.is_empty() => (0, 0, Some("root".to_owned())),
        Err(_) => {
            let entry = passwd
                .iter()
                .find(|p| p.name == user)
                .ok_or_else(|| format!("user {user:?} is not in the image's /etc/passwd"))?;
            (entry.uid, entry.gid, Some(entry.name.clone()))
        }
    })
}

/// The groups besides `gid`: the user's /etc/group memberships (unless the policy is
/// strict) and the supplemental groups asked for, sorted, each once.
fn additional_groups(
    requested: &Requested,
    name: Option<&str>,
    groups: &[GroupEntry],
    gid: u32,
) -> Result<Vec<u32>, String> {
    let mut extra: Vec<u32> = Vec::new();
    if let Some(name) = name.filter(|_| !requested.strict_groups) {
        extra.extend(
            groups
                .iter()
                .filter(|g| g.members.iter().any(|m| m == name))
                .map(|g| g.gid),
        );
    }
    for g in &requested.supplemental_groups {
        extra.push(to_id(*g, "supplemental_groups")?);
    }
    extra.retain(|g| *g != gid);
    extra.sort_unstable();
    extra.dedup();
    Ok(extra)
}

fn to_id(value: i64, field: &str) -> Result<u32, String> {
    u32::try_from(value).map_err(|_| format!("{field}: {value} is not a valid id"))
}

/// A file of the image as the container will see it: from the top-most layer that has it,
/// unless a higher layer whited it out.
pub fn read_image_file(layers: &[PathBuf], relative: &str) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    for layer in layers {
        let path = layer.join(relative);
        match std::fs::symlink_metadata(&path) {
            // An overlay whiteout (0:0 char device) hides lower layers' copies.
            Ok(meta) if meta.file_type().is_char_device() => return None,
            Ok(meta) if meta.is_file() => return std::fs::read_to_string(&path).ok(),
            _ => {}
        }
        if opaque_parent(layer, relative) {
            return None;
        }
    }
    None
}

/// Whether a parent folder of `relative` in `layer` is opaque (hides lower layers).
fn opaque_parent(layer: &Path, relative: &str) -> bool {
    let parent = Path::new(relative).parent().unwrap_or(Path::new(""));
    let dir = layer.join(parent);
    let mut buf = [0u8; 4];
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap_or_default();
    // SAFETY: valid C strings and a buffer of the given size.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    n == 1 && buf[0] == b'y'
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() >= 4).then_some(())?;
            Some(PasswdEntry {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() >= 3).then_some(())?;
            Some(GroupEntry {
                name: f[0].to_owned(),
                gid: f[2].parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\nwww-data:x:33:33::/var/www:/bin/false\ndefault-user:x:1000:1000::/home/d:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\ngroup-defined-in-image:x:50000:default-user\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn identities() {
        let img = image();
        let layers = vec![img.path().to_owned()];
        let id = |r: Requested, u: &str| resolve(&r, u, &layers);
        assert_eq!(
            id(Requested::default(), "").unwrap(),
            Identity {
                uid: 0,
                gid: 0,
                groups: vec![]
            }
        );
        let by_uid = Requested {
            run_as_user: Some(1001),
            run_as_group: Some(1002),
            ..Default::default()
        };
        assert_eq!(
            id(by_uid, "").unwrap(),
            Identity {
                uid: 1001,
                gid: 1002,
                groups: vec![]
            }
        );
        let by_name = Requested {
            run_as_username: "nobody".into(),
            ..Default::default()
        };
        assert_eq!(id(by_name, "").unwrap().uid, 65534);
        assert_eq!(
            id(Requested::default(), "www-data:1004").unwrap(),
            Identity {
                uid: 33,
                gid: 1004,
                groups: vec![]
            }
        );
        let merge = Requested {
            run_as_user: Some(1000),
            supplemental_groups: vec![1234],
            ..Default::default()
        };
        assert_eq!(id(merge, "").unwrap().groups, vec![1234, 50000]);
        let strict = Requested {
            run_as_user: Some(1000),
            supplemental_groups: vec![1234],
            strict_groups: true,
            ..Default::default()
        };
        assert_eq!(id(strict, "").unwrap().groups, vec![1234]);
        let group_only = Requested {
            run_as_group: Some(5),
            ..Default::default()
        };
        assert!(id(group_only, "").is_err());
        assert!(
            id(Requested::default(), "nosuchuser")
                .unwrap_err()
                .contains("nosuchuser")
        );
    }

    #[test]
    fn whiteouts_hide_lower_files() {
        let lower = image();
        let upper = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(upper.path().join("etc")).unwrap();
        nix::sys::stat::mknod(
            &upper.path().join("etc/passwd"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        let layers = vec![upper.path().to_owned(), lower.path().to_owned()];
        assert!(read_image_file(&layers, "etc/passwd").is_none());
        assert!(read_image_file(&layers, "etc/group").is_some());
    }
}
