#!/usr/bin/env python3
"""Print one line per file of a directory tree, sorted, for diffing two trees.

    hack/tree-manifest.py DIR

Each line: path, type, mode, uid:gid, then what the type has: size and sha256 for
regular files (and the first path of its hard-link group when it has several names),
the target for symlinks, major,minor for devices; then the extended attributes,
sorted, values in hex. mtimes and directory sizes are left out: they differ between
two correct unpacks. Attributes left out: trusted.overlay.* (overlayfs' own
bookkeeping, never an image's content) and security.selinux (a host label, not part
of the image). The tree is not followed through symlinks or into other mounts.
Standard library only.
"""

import hashlib
import os
import stat
import sys

SKIPPED_XATTR_PREFIXES = ("trusted.overlay.", "security.selinux")


def kind(mode):
    for test, name in ((stat.S_ISDIR, "dir"), (stat.S_ISREG, "file"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISCHR, "char"), (stat.S_ISBLK, "block"), (stat.S_ISFIFO, "fifo"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "unknown"


def file_hash(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def xattrs(path):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return []
    out = []
    for name in sorted(names):
        if name.startswith(SKIPPED_XATTR_PREFIXES):
            continue
        value = os.getxattr(path, name, follow_symlinks=False)
        out.append("%s=%s" % (name, value.hex()))
    return out


def walk(root):
    """(relative path, lstat) for the root and everything beneath it, on the root's mount."""
    top = os.lstat(root)
    yield "/", top
    for parent, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(parent, name)
            st = os.lstat(full)
            if stat.S_ISDIR(st.st_mode) and st.st_dev != top.st_dev:
                dirs.remove(name)  # another mount: not part of the tree
                continue
            yield "/" + os.path.relpath(full, root), st


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: tree-manifest.py DIR")
    root = sys.argv[1]
    entries = sorted(walk(root), key=lambda e: e[0])
    # A hard-link group is named by its first path, so two trees agree whatever the inodes.
    groups = {}
    for path, st in entries:
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            groups.setdefault((st.st_dev, st.st_ino), path)
    for path, st in entries:
        t = kind(st.st_mode)
        fields = [path, t, "%04o" % stat.S_IMODE(st.st_mode), "%d:%d" % (st.st_uid, st.st_gid)]
        full = os.path.join(root, path.lstrip("/"))
        if t == "file":
            fields += ["size=%d" % st.st_size, "sha256=" + file_hash(full)]
            leader = groups.get((st.st_dev, st.st_ino))
            if leader is not None and leader != path:
                fields.append("hardlink=" + leader)
        elif t == "symlink":
            fields.append("-> " + os.readlink(full))
        elif t in ("char", "block"):
            fields.append("dev=%d,%d" % (os.major(st.st_rdev), os.minor(st.st_rdev)))
        fields += xattrs(full)
        print("\t".join(fields))


if __name__ == "__main__":
    main()
