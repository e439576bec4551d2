//! Validated cgroup paths: absolute, no `.` or `..`, so joining one onto a hierarchy's mount
//! point can never leave that hierarchy.

use std::path::{Path, PathBuf};

use super::error::CgroupError;

/// A cgroup path such as `/kubepods/burstable/pod<uid>/<id>`, normalised (no empty components).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupPath {
    text: String,
    parts: Vec<String>,
}

impl CgroupPath {
    pub(crate) fn parse(path: &str) -> Result<CgroupPath, CgroupError> {
        let invalid = |reason| CgroupError::InvalidPath {
            path: path.to_owned(),
            reason,
        };
        if !path.starts_with('/') {
            return Err(invalid("it must be absolute (start with /)"));
        }
        if path.contains('\0') {
            return Err(invalid("it contains a NUL byte"));
        }
        let mut parts = Vec::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if part == "." || part == ".." {
                return Err(invalid("it must not contain . or .. components"));
            }
            parts.push(part.to_owned());
        }
        let text = format!("/{}", parts.join("/"));
        Ok(CgroupPath { text, parts })
    }

    /// Parses a path that names a cgroup below the root: the operations that destroy or limit
    /// a cgroup refuse the root of a hierarchy.
    pub(crate) fn parse_non_root(path: &str) -> Result<CgroupPath, CgroupError> {
        let parsed = CgroupPath::parse(path)?;
        if parsed.is_root() {
            return Err(CgroupError::InvalidPath {
                path: path.to_owned(),
                reason: "it names the root cgroup, which ferrocri never changes",
            });
        }
        Ok(parsed)
    }

    pub(crate) fn is_root(&self) -> bool {
        self.parts.is_empty()
    }

    pub(crate) fn parts(&self) -> &[String] {
        &self.parts
    }

    /// This cgroup's directory in the hierarchy mounted at `mount`.
    pub(crate) fn dir_in(&self, mount: &Path) -> PathBuf {
        let mut dir = mount.to_path_buf();
        dir.extend(&self.parts);
        dir
    }
}

impl std::fmt::Display for CgroupPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalises_absolute_paths() {
        let p = CgroupPath::parse("/kubepods/burstable/pod1234/abc").unwrap();
        assert_eq!(p.to_string(), "/kubepods/burstable/pod1234/abc");
        assert_eq!(p.parts(), ["kubepods", "burstable", "pod1234", "abc"]);
        assert_eq!(
            CgroupPath::parse("//ferrocri///x/").unwrap().to_string(),
            "/ferrocri/x"
        );
        assert!(CgroupPath::parse("/").unwrap().is_root());
        assert_eq!(
            CgroupPath::parse("/ferrocri/x")
                .unwrap()
                .dir_in(Path::new("/sys/fs/cgroup/memory")),
            Path::new("/sys/fs/cgroup/memory/ferrocri/x")
        );
        // Dots inside a name are fine; only whole `.`/`..` components are refused.
        assert!(CgroupPath::parse("/a/..b/c.d/...").is_ok());
    }

    #[test]
    fn refuses_relative_and_dot_paths() {
        for bad in [
            "",
            "ferrocri/x",
            "./x",
            "/a/../b",
            "/..",
            "/a/./b",
            "/a/..",
            "/a\0b",
        ] {
            let err = CgroupPath::parse(bad).unwrap_err();
            assert!(
                matches!(&err, CgroupError::InvalidPath { path, .. } if path == bad),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn refuses_root_where_asked() {
        assert!(CgroupPath::parse_non_root("/").is_err());
        assert!(CgroupPath::parse_non_root("///").is_err());
        assert!(CgroupPath::parse_non_root("/x").is_ok());
    }
}
