#!/usr/bin/env python3
"""Write the corner-case images no builder makes and push them to a registry.

Each case is an image (or index, or artifact) whose bytes are written here by
hand, for the quirks real layers and manifests have: entry names with `/`,
`./`, `//` and `..`, the root entry itself, archives that end without padding
or end-of-archive blocks, trailing garbage, duplicates, PAX and GNU long names,
xattrs, GNU sparse files, times before 1970 and after 2038, large owners,
empty layers, compression that disagrees with the media type, zstd, Docker
and OCI documents, indexes with attestations and variants, cosign signatures,
OCI artifacts, image configs with every form of `User`, `Entrypoint` and `Cmd`,
and the escapes the unpacker must refuse.

Every case is pushed as <registry>/ferrocri-corner/<case>:1 through the
distribution HTTP API (monolithic blob uploads, manifest PUTs); cases that need
a shell sit on the busybox test image's layers (read from the same registry).
What each case must give is recorded next to it and written as JSON (--out):
the tree its top layer must unpack to, the refusal, or what its containers
print. tests/corner_images.rs pulls every case through the daemon and checks
exactly that.

Standard library only. zstd cases use the `zstd` command when it is installed
and are skipped (with a message) when it is not. Deterministic: a rerun pushes
the same digests.
"""

import argparse
import gzip
import hashlib
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

REPO = "ferrocri-corner"
TAG = "1"
BUSYBOX = ("e2e-test-images/busybox", "1.29-2")
MTIME = 1500000000

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = OCI_LAYER + "+gzip"
OCI_LAYER_ZSTD = OCI_LAYER + "+zstd"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = DOCKER_LAYER + ".gzip"
DOCKER_TYPES = {OCI_LAYER_GZIP: DOCKER_LAYER_GZIP, OCI_LAYER: DOCKER_LAYER}
ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- tar bytes
# Written by hand: tarfile normalises names and always pads, which is exactly
# what these cases must not do.

def octal(value, width):
    return ("%0*o" % (width - 1, value)).encode() + b"\0"


def base256(value, width):
    """The GNU base-256 form of a numeric field (two's complement, top bit set)."""
    raw = bytearray((value % (1 << (8 * width))).to_bytes(width, "big"))
    raw[0] |= 0x80
    return bytes(raw)


def header(name, typeflag=b"0", size=0, mode=0o644, uid=0, gid=0, mtime=MTIME,
           link="", gnu=False, raw=None):
    """One 512-byte header. `raw` maps a field offset to bytes placed as is."""
    block = bytearray(512)

    def put(offset, data):
        block[offset:offset + len(data)] = data

    name = name.encode() if isinstance(name, str) else name
    link = link.encode() if isinstance(link, str) else link
    assert len(name) <= 100 and len(link) <= 100, name
    put(0, name)
    put(100, octal(mode, 8))
    put(108, octal(uid, 8))
    put(116, octal(gid, 8))
    put(124, octal(size, 12))
    put(136, octal(mtime, 12))
    put(156, typeflag)
    put(157, link)
    put(257, b"ustar  \0" if gnu else b"ustar\x0000")
    put(265, b"root")
    put(297, b"root")
    for offset, data in (raw or {}).items():
        put(offset, data)
    block[148:156] = b" " * 8
    put(148, ("%06o" % sum(block)).encode() + b"\0 ")
    return bytes(block)


def pad(data):
    return data + b"\0" * (-len(data) % 512)


def entry(name, data=b"", **kw):
    return header(name, size=len(data), **kw) + pad(data)


def directory(name, mode=0o755, **kw):
    return header(name, typeflag=b"5", mode=mode, **kw)


def symlink(name, target, **kw):
    return header(name, typeflag=b"2", mode=0o777, link=target, **kw)


def hardlink(name, target, **kw):
    return header(name, typeflag=b"1", link=target, **kw)


def pax(records):
    """A PAX extended header for the next entry; values are bytes or str."""
    body = b""
    for key, value in records:
        value = value.encode() if isinstance(value, str) else value
        rest = b" " + key.encode() + b"=" + value + b"\n"
        length = len(rest) + 1
        while len(str(length)) + len(rest) != length:
            length += 1
        body += str(length).encode() + rest
    return entry("PaxHeaders/entry", body, typeflag=b"x")


def gnu_long(kind, value):
    """A GNU long name (`L`) or long link name (`K`) entry."""
    return entry("././@LongLink", value.encode() + b"\0", typeflag=kind, gnu=True)


EOA = b"\0" * 1024


def tar(*entries):
    return b"".join(entries) + EOA


# ---------------------------------------------------------------- layers

class Layer:
    def __init__(self, tar_bytes, media_type=OCI_LAYER_GZIP, compress="gzip"):
        self.diff_id = sha256(tar_bytes)
        if compress == "gzip":
            self.blob = gzip.compress(tar_bytes, mtime=0)
        elif compress == "zstd":
            self.blob = subprocess.run(["zstd", "-q", "-c", "-19"], input=tar_bytes,
                                       stdout=subprocess.PIPE, check=True).stdout
        else:
            self.blob = tar_bytes
        self.media_type = media_type
        self.digest = sha256(self.blob)


def chain_id(diff_ids):
    chain = None
    for diff in diff_ids:
        chain = diff if chain is None else sha256(("%s %s" % (chain, diff)).encode())
    return chain


# ---------------------------------------------------------------- registry

class Registry:
    def __init__(self, address):
        self.base = "http://%s/v2/" % address

    def request(self, method, path, data=None, headers=None):
        req = urllib.request.Request(self.base + path if not path.startswith("http") else path,
                                     data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def get_manifest(self, repo, reference):
        status, headers, body = self.request("GET", "%s/manifests/%s" % (repo, reference),
                                             headers={"Accept": ACCEPT})
        if status != 200:
            sys.exit("cannot read %s:%s from the registry (%d); run hack/registry.sh start && "
                     "hack/build-test-images.sh" % (repo, reference, status))
        return json.loads(body)

    def get_blob(self, repo, digest):
        status, _, body = self.request("GET", "%s/blobs/%s" % (repo, digest))
        assert status == 200, (repo, digest, status)
        return body

    def push_blob(self, repo, data, from_repo=None):
        digest = sha256(data)
        status, _, _ = self.request("HEAD", "%s/blobs/%s" % (repo, digest))
        if status == 200:
            return digest
        status, headers, body = self.request("POST", "%s/blobs/uploads/" % repo, data=b"")
        assert status == 202, (status, body)
        location = headers["Location"]
        if location.startswith("/"):
            location = self.base[:-len("/v2/")] + location
        joiner = "&" if "?" in location else "?"
        status, _, body = self.request("PUT", location + joiner + "digest=" + digest, data=data,
                                       headers={"Content-Type": "application/octet-stream"})
        assert status == 201, (status, body)
        return digest

    def push_manifest(self, repo, reference, document, media_type):
        data = json.dumps(document, separators=(",", ":")).encode()
        status, _, body = self.request("PUT", "%s/manifests/%s" % (repo, reference), data=data,
                                       headers={"Content-Type": media_type})
        assert status == 201, (repo, reference, status, body)
        return sha256(data), len(data)


# ---------------------------------------------------------------- images

class Builder:
    def __init__(self, registry):
        self.registry = registry
        self.cases = []
        self.base = self.read_busybox()

    def read_busybox(self):
        """The busybox test image's layers (as Layer-like records) and config."""
        repo, tag = BUSYBOX
        doc = self.registry.get_manifest(repo, tag)
        if "manifests" in doc:
            chosen = next(m for m in doc["manifests"]
                          if m.get("platform", {}).get("architecture") == "amd64")
            doc = self.registry.get_manifest(repo, chosen["digest"])
        config = json.loads(self.registry.get_blob(repo, doc["config"]["digest"]))
        layers = []
        for desc, diff_id in zip(doc["layers"], config["rootfs"]["diff_ids"]):
            blob = self.registry.get_blob(repo, desc["digest"])
            layer = Layer.__new__(Layer)
            layer.blob, layer.diff_id = blob, diff_id
            layer.media_type, layer.digest = OCI_LAYER_GZIP, desc["digest"]
            layers.append(layer)
        return layers, config

    def image(self, repo, layers, run_config=None, on_busybox=False, docker=False,
              config_extra=None, config_media_type=None, artifact_type=None, tag=TAG,
              config_bytes=None):
        """Pushes one image manifest; returns (digest, size, media type, top chain ID)."""
        if on_busybox:
            base_layers, base_config = self.base
            layers = base_layers + layers
            if run_config is None:
                run_config = base_config.get("config", {})
        config = {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [l.diff_id for l in layers]},
        }
        if run_config is not None:
            config["config"] = run_config
        config.update(config_extra or {})
        if config_bytes is None:
            config_bytes = json.dumps(config, sort_keys=True).encode()
        for layer in layers:
            self.registry.push_blob(repo, layer.blob)
        self.registry.push_blob(repo, config_bytes)
        manifest_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
        manifest = {
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {
                "mediaType": config_media_type or (DOCKER_CONFIG if docker else OCI_CONFIG),
                "digest": sha256(config_bytes),
                "size": len(config_bytes),
            },
            "layers": [{"mediaType": DOCKER_TYPES.get(l.media_type, l.media_type) if docker
                        else l.media_type, "digest": l.digest, "size": len(l.blob)}
                       for l in layers],
        }
        if artifact_type:
            manifest["artifactType"] = artifact_type
        digest, size = self.registry.push_manifest(repo, tag, manifest, manifest_type)
        return digest, size, manifest_type, chain_id([l.diff_id for l in layers])

    def add(self, name, **expect):
        """Records a case: `tree` (+ `exact`), `refused` (+ `code`), `runs`."""
        case = {"name": name, "ref": "docker.io/%s/%s:%s" % (REPO, name, TAG)}
        case.update(expect)
        self.cases.append(case)

    def standalone(self, name, tar_bytes, tree, exact=True, **layer_kw):
        """A one-layer image whose layer must unpack to exactly `tree`."""
        _, _, _, top = self.image("%s/%s" % (REPO, name), [Layer(tar_bytes, **layer_kw)])
        self.add(name, top_chain_id=top, tree=tree, exact=exact)

    def refused(self, name, tar_bytes, message, code="FailedPrecondition"):
        self.image("%s/%s" % (REPO, name), [Layer(tar_bytes)])
        self.add(name, refused=message, code=code)


def f(content, mode=0o644, **kw):
    """An expected regular file."""
    spec = {"type": "file", "mode": mode, "content": content}
    spec.update(kw)
    return spec


def d(mode=0o755, **kw):
    spec = {"type": "dir", "mode": mode}
    spec.update(kw)
    return spec


def l(target):
    return {"type": "symlink", "target": target}


# ---------------------------------------------------------------- the cases

def layer_cases(b):
    # Names as the ecosystem writes them; umoci writes the root as "/".
    b.standalone("names", tar(
        directory("/", mode=0o755),
        directory("./etc/"),
        entry("//etc//hosts", b"127.0.0.1 localhost\n"),
        entry("etc/./sub/../motd", b"hi\n"),
        entry("/abs/file", b"abs\n"),
        directory("trailing/", mode=0o700),
        hardlink("./etc/hard", "/etc/hosts"),
        hardlink("etc/hard2", "./etc/./hosts"),
        symlink("etc/link", "/etc/hosts"),
        directory(".", mode=0o711),
    ), {
        "": d(0o711),
        "etc": d(),
        "etc/hosts": f("127.0.0.1 localhost\n", nlink=3),
        "etc/hard": f("127.0.0.1 localhost\n", nlink=3),
        "etc/hard2": f("127.0.0.1 localhost\n", nlink=3),
        "etc/motd": f("hi\n"),
        "etc/link": l("/etc/hosts"),
        "abs": d(),
        "abs/file": f("abs\n"),
        "trailing": d(0o700),
    })

    # umoci insert: the stream stops right after the last file's data.
    body = directory("/") + entry("data/a", b"first\n")
    last = b"last entry, no padding, no end-of-archive blocks\n"
    body += header("data/b", size=len(last)) + last
    b.standalone("no-padding", body, {
        "": d(), "data": d(),
        "data/a": f("first\n"),
        "data/b": f(last.decode()),
    })
    b.standalone("no-padding-plain", body, {
        "": d(), "data": d(),
        "data/a": f("first\n"),
        "data/b": f(last.decode()),
    }, media_type=OCI_LAYER, compress=None)

    # After the end-of-archive marker: garbage, then more zero blocks.
    b.standalone("after-eoa",
                 tar(entry("f", b"content\n")) + b"garbage that is not a tar header" +
                 b"\0" * 512 * 10 + pad(b"x" * 100),
                 {"f": f("content\n")})

    b.standalone("duplicates", tar(
        entry("a", b"one\n"),
        entry("a", b"two\n", mode=0o600),
        entry("x", b"a file first\n"),
        directory("x/"),
        entry("x/inner", b"inner\n"),
        directory("y/"),
        entry("y/deep", b"gone\n"),
        entry("y", b"now a file\n"),
        symlink("s", "t"),
        entry("s", b"real\n"),
        directory("z/", mode=0o700),
        directory("z/", mode=0o750, uid=33, gid=33),
    ), {
        "a": f("two\n", 0o600),
        "x": d(), "x/inner": f("inner\n"),
        "y": f("now a file\n"),
        "s": f("real\n"),
        "z": d(0o750, uid=33, gid=33),
    })

    pax_dir = "pax/" + "p" * 120
    gnu_dir = "gnu/" + "g" * 120
    long_target = "/" + "t" * 200
    b.standalone("long-names", tar(
        directory("pax/"), directory("gnu/"),
        pax([("path", pax_dir + "/")]), directory("placeholder/"),
        pax([("path", pax_dir + "/file")]), entry("placeholder", b"pax\n"),
        pax([("linkpath", long_target)]), symlink("pax-link", "placeholder"),
        gnu_long(b"L", gnu_dir + "/"), directory(gnu_dir[:99] + "/", gnu=True),
        gnu_long(b"L", gnu_dir + "/file"), entry(gnu_dir[:100], b"gnu\n", gnu=True),
        gnu_long(b"K", gnu_dir + "/file"), hardlink("gnu-hard", gnu_dir[:100], gnu=True),
        pax([("path", "pax-hard"), ("linkpath", pax_dir + "/file")]),
        hardlink("x", "y"),
    ), {
        "pax": d(), "gnu": d(),
        pax_dir: d(), pax_dir + "/file": f("pax\n", nlink=2), "pax-hard": f("pax\n", nlink=2),
        "pax-link": l(long_target),
        gnu_dir: d(), gnu_dir + "/file": f("gnu\n", nlink=2), "gnu-hard": f("gnu\n", nlink=2),
    })

    b.standalone("xattrs", tar(
        pax([("SCHILY.xattr.user.comment", "hello"), ("SCHILY.xattr.user.empty", "")]),
        entry("file", b"x\n"),
        pax([("SCHILY.xattr.user.dir", "d")]),
        directory("dir/"),
    ), {
        "file": f("x\n", xattrs={"user.comment": "hello", "user.empty": ""}),
        "dir": d(xattrs={"user.dir": "d"}),
    })

    # GNU old sparse (type S): map in the header, 10000 bytes of which 1024 stored.
    sparse_map = {386: octal(0, 12), 398: octal(512, 12),
                  410: octal(9488, 12), 422: octal(512, 12), 483: octal(10000, 12)}
    sparse = header("sparse", typeflag=b"S", size=1024, gnu=True, raw=sparse_map)
    sparse += b"A" * 512 + b"B" * 512
    content = b"A" * 512 + b"\0" * (9488 - 512) + b"B" * 512
    b.standalone("sparse", sparse + EOA, {
        "sparse": {"type": "file", "mode": 0o644, "sha256": sha256(content), "size": 10000},
    })

    # GNU sparse in PAX form (GNU tar --sparse --format=posix), formats 1.0 and 0.1.
    chunked = b"x" * 512 + b"\0" * (4096 - 1024) + b"y" * 512
    b.standalone("pax-sparse", tar(
        pax([("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0"),
             ("GNU.sparse.name", "v1.0"), ("GNU.sparse.realsize", "4096")]),
        entry("GNUSparseFile.0/v1.0", pad(b"2\n0\n512\n3584\n512\n") + b"x" * 512 + b"y" * 512),
        pax([("GNU.sparse.major", "0"), ("GNU.sparse.minor", "1"), ("GNU.sparse.name", "v0.1"),
             ("GNU.sparse.size", "4096"), ("GNU.sparse.map", "0,512,3584,512")]),
        entry("GNUSparseFile.0/v0.1", b"x" * 512 + b"y" * 512),
    ), {
        "v1.0": {"type": "file", "mode": 0o644, "sha256": sha256(chunked), "size": 4096},
        "v0.1": {"type": "file", "mode": 0o644, "sha256": sha256(chunked), "size": 4096},
    })

    b.standalone("times", tar(
        entry("before-1970", b"", raw={136: base256(-315360000, 12)}),
        entry("after-2038", b"", raw={136: base256(1 << 33, 12)}),
        pax([("mtime", "-1.5"), ("atime", "4102444800.25")]),
        entry("pax-times", b""),
        directory("dir-1960/", raw={136: base256(-315619200, 12)}),
        entry("dir-1960/child", b""),
    ), {
        "before-1970": f("", mtime=-315360000),
        "after-2038": f("", mtime=1 << 33),
        "pax-times": f("", mtime=-2),
        "dir-1960": d(mtime=-315619200),
        "dir-1960/child": f(""),
    })

    b.standalone("owners", tar(
        entry("base256", b"", raw={108: base256(4294967294, 8), 116: base256(4000000000, 8)}),
        pax([("uid", "3000000000"), ("gid", "3000000001")]),
        entry("pax", b""),
        entry("octal-max", b"", uid=0o7777777, gid=0o7777776),
    ), {
        "base256": f("", uid=4294967294, gid=4000000000),
        "pax": f("", uid=3000000000, gid=3000000001),
        "octal-max": f("", uid=0o7777777, gid=0o7777776),
    })

    # Compression from the bytes, whatever the media type says.
    marker = lambda text: tar(entry("marker", text.encode()))
    b.standalone("gzip-type-plain-bytes", marker("plain under a gzip type\n"),
                 {"marker": f("plain under a gzip type\n")},
                 media_type=OCI_LAYER_GZIP, compress=None)
    b.standalone("plain-type-gzip-bytes", marker("gzip under a plain type\n"),
                 {"marker": f("gzip under a plain type\n")},
                 media_type=OCI_LAYER, compress="gzip")
    b.standalone("oci-uncompressed", marker("uncompressed OCI layer\n"),
                 {"marker": f("uncompressed OCI layer\n")},
                 media_type=OCI_LAYER, compress=None)
    if shutil.which("zstd"):
        b.standalone("zstd", marker("zstd layer\n"), {"marker": f("zstd layer\n")},
                     media_type=OCI_LAYER_ZSTD, compress="zstd")
        b.standalone("zstd-under-gzip-type", marker("zstd under a gzip type\n"),
                     {"marker": f("zstd under a gzip type\n")},
                     media_type=OCI_LAYER_GZIP, compress="zstd")
        b.standalone("zstd-under-plain-type", marker("zstd under a plain type\n"),
                     {"marker": f("zstd under a plain type\n")},
                     media_type=OCI_LAYER, compress="zstd")
    else:
        print("corner_cases: no `zstd` command (apt-get install zstd); skipping the zstd cases",
              file=sys.stderr)
    # Docker schema 2 with an uncompressed rootfs.diff.tar layer.
    layer = Layer(marker("docker uncompressed\n"), media_type=DOCKER_LAYER, compress=None)
    _, _, _, top = b.image("%s/docker-uncompressed" % REPO, [layer], docker=True)
    b.add("docker-uncompressed", top_chain_id=top, exact=True,
          tree={"marker": f("docker uncompressed\n")})

    # Empty layers, with history entries marked empty_layer for the config-only steps.
    empty = [
        Layer(b"", media_type=OCI_LAYER_GZIP),                       # gzip of nothing
        Layer(EOA, media_type=OCI_LAYER_GZIP),                       # a zero-entry tar
        Layer(b"\0" * 10240, media_type=OCI_LAYER, compress=None),   # only EOA blocks
        Layer(tar(entry("marker", b"after three empty layers\n"))),
    ]
    history = [{"created_by": "busybox"}] * len(b.base[0])
    history += [{"created_by": "ENV A=b", "empty_layer": True}]
    history += [{"created_by": "layer %d" % i} for i in range(len(empty))]
    history += [{"created_by": "CMD", "empty_layer": True}]
    _, _, _, top = b.image("%s/empty-layers" % REPO, empty, on_busybox=True,
                           config_extra={"history": history})
    b.add("empty-layers", top_chain_id=top, exact=True,
          tree={"marker": f("after three empty layers\n")},
          runs=[{"command": ["/bin/cat", "/marker"], "stdout": "after three empty layers"}])

    # What must be refused: escapes (lexical and through symlinks), device nodes through a
    # symlink, whiteout tricks, owners Linux has no room for, PAX sparse files.
    escapes = "path escapes the layer directory"
    b.refused("escape-dotdot", tar(entry("../escaped", b"x")),
              'entry "../escaped": ' + escapes)
    b.refused("escape-abs-dotdot", tar(entry("/etc/../../escaped", b"x")),
              'entry "/etc/../../escaped": ' + escapes)
    b.refused("escape-symlink", tar(symlink("up", "../.."), entry("up/escaped", b"x")),
              'entry "up/escaped": ' + escapes)
    b.refused("escape-abs-symlink", tar(symlink("root", "/"), entry("root/tmp/escaped", b"x")),
              'entry "root/tmp/escaped": ' + escapes)
    b.refused("escape-hardlink", tar(hardlink("h", "../../etc/passwd")),
              'entry "h": hard link target "../../etc/passwd" escapes the layer directory')
    b.refused("escape-hardlink-symlink", tar(symlink("s", "/etc"), hardlink("h", "s/passwd")),
              'entry "h": hard link target "s/passwd" escapes the layer directory')
    b.refused("escape-device",
              tar(symlink("dev", "/dev"),
                  header("dev/evil", typeflag=b"3", raw={329: octal(1, 8), 337: octal(3, 8)})),
              'entry "dev/evil": ' + escapes)
    b.refused("whiteout-through-symlink", tar(symlink("s", "/etc"), entry("s/.wh.passwd")),
              'entry "s/.wh.passwd": ' + escapes)
    b.refused("whiteout-meta", tar(entry(".wh..wh.plnk")),
              'entry ".wh..wh.plnk": invalid whiteout: unknown whiteout metadata entry')
    b.refused("whiteout-dotdot", tar(entry("a/.wh..")),
              'entry "a/.wh..": invalid whiteout: it names no file')
    b.refused("owner-too-big", tar(entry("f", b"", raw={108: base256(1 << 32, 8)})),
              'entry "f": uid 4294967296 cannot be a Linux uid (the range is 0 to 4294967294)')
    cut = tar(entry("a", b"a"), entry("b", b"b" * 2000))[:512 * 3 + 700]
    b.refused("truncated-data", cut, "entry \"b\": the stream ends inside this entry's data")


ETC_LAYER = tar(
    directory("etc/"),
    entry("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\ncorner:x:1234:2345::/:/bin/sh\n"),
    entry("etc/group", b"root:x:0:\ncornergrp:x:3456:\nbase:x:2345:\n"),
)


def id_run(expected):
    return {"command": ["/bin/sh", "-c", "echo $(id -u):$(id -g)"], "stdout": expected}


def manifest_cases(b):
    bb_layers, bb_config = b.base
    bb_run = bb_config.get("config", {})

    # Configs: every form of User, no Cmd/Env/WorkingDir/User at all, Entrypoint and Cmd.
    for name, user, expected in [
        ("user-name", "corner", "1234:2345"),
        ("user-uid", "1234", "1234:2345"),
        ("user-uid-gid", "1234:3456", "1234:3456"),
        ("user-name-group", "corner:cornergrp", "1234:3456"),
        ("user-unknown-uid", "4321", "4321:0"),
    ]:
        run = dict(bb_run, User=user)
        b.image("%s/%s" % (REPO, name), [Layer(ETC_LAYER)], run_config=run, on_busybox=True)
        b.add(name, runs=[id_run(expected)])
    # No run config at all (on_busybox would lend busybox's).
    layers = bb_layers
    config = {"architecture": "amd64", "os": "linux",
              "rootfs": {"type": "layers", "diff_ids": [x.diff_id for x in layers]}}
    b.image("%s/config-minimal" % REPO, layers,
            config_bytes=json.dumps(config, sort_keys=True).encode())
    b.add("config-minimal", runs=[{
        "command": ["/bin/sh", "-c", "echo cwd=$PWD uid=$(/bin/id -u)"],
        "stdout": "cwd=/ uid=0"}])
    b.image("%s/workdir" % REPO, [], run_config=dict(bb_run, WorkingDir="/etc"),
            on_busybox=True)
    b.add("workdir", runs=[{"command": ["/bin/sh", "-c", "pwd"], "stdout": "/etc"}])
    b.image("%s/entrypoint-cmd" % REPO, [],
            run_config={"Entrypoint": ["/bin/echo", "ep"], "Cmd": ["cmd"]}, on_busybox=True)
    b.add("entrypoint-cmd", runs=[
        {"stdout": "ep cmd"},
        {"args": ["arg"], "stdout": "ep arg"},
        {"command": ["/bin/echo", "command"], "stdout": "command"},
        {"command": ["/bin/echo", "command"], "args": ["arg"], "stdout": "command arg"},
    ])
    b.image("%s/cmd-only" % REPO, [], run_config={"Cmd": ["/bin/echo", "only-cmd"]},
            on_busybox=True)
    b.add("cmd-only", runs=[
        {"stdout": "only-cmd"},
        {"args": ["/bin/echo", "args"], "stdout": "args"},
    ])
    b.image("%s/entrypoint-only" % REPO, [], run_config={"Entrypoint": ["/bin/echo", "ep"]},
            on_busybox=True)
    b.add("entrypoint-only", runs=[{"stdout": "ep"}, {"args": ["x"], "stdout": "ep x"}])

    # Indexes. Children are pushed first (the registry checks them).
    def marked(repo, text, docker=False, tag=None):
        layer = Layer(tar(entry("marker", text.encode())),
                      media_type=DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP)
        digest, size, media_type, top = b.image(repo, [layer], on_busybox=True, docker=docker,
                                                tag=tag or "child-" + text.strip().replace(" ", "-"))
        return {"mediaType": media_type, "digest": digest, "size": size}, top

    def push_index(name, entries, docker=False):
        media_type = DOCKER_LIST if docker else OCI_INDEX
        b.registry.push_manifest("%s/%s" % (REPO, name), TAG, {
            "schemaVersion": 2, "mediaType": media_type, "manifests": entries}, media_type)

    repo = "%s/attestations" % REPO
    image, top = marked(repo, "image\n")
    # BuildKit's attestation manifest: unknown/unknown, annotated, in-toto layers.
    statement = b'{"_type":"https://in-toto.io/Statement/v0.1"}'
    b.registry.push_blob(repo, statement)
    b.registry.push_blob(repo, b"{}")
    att_digest, att_size = b.registry.push_manifest(repo, "attestation", {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(b"{}"), "size": 2},
        "layers": [{"mediaType": "application/vnd.in-toto+json", "digest": sha256(statement),
                    "size": len(statement)}]}, OCI_MANIFEST)
    attestation = {"mediaType": OCI_MANIFEST, "digest": att_digest, "size": att_size,
                   "platform": {"architecture": "unknown", "os": "unknown"},
                   "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                                   "vnd.docker.reference.digest": image["digest"]}}
    push_index("attestations", [attestation, dict(image, platform={"architecture": "amd64",
                                                                   "os": "linux"})])
    b.add("attestations", top_chain_id=top, tree={"marker": f("image\n")}, exact=True,
          runs=[{"command": ["/bin/cat", "/marker"], "stdout": "image"}])

    repo = "%s/variants" % REPO
    arm, _ = marked(repo, "arm64\n")
    v1, _ = marked(repo, "v1\n")
    v2, top = marked(repo, "v2\n")
    push_index("variants", [
        dict(arm, platform={"architecture": "arm64", "os": "linux", "variant": "v8"}),
        dict(v1, platform={"architecture": "amd64", "os": "linux"}),
        dict(v2, platform={"architecture": "amd64", "os": "linux", "variant": "v2"}),
    ])
    b.add("variants", top_chain_id=top, tree={"marker": f("v2\n")}, exact=True)

    repo = "%s/docker-list" % REPO
    arm, _ = marked(repo, "arm64\n", docker=True)
    amd, top = marked(repo, "amd64\n", docker=True)
    push_index("docker-list", [
        dict(arm, platform={"architecture": "arm64", "os": "linux", "variant": "v8"}),
        dict(amd, platform={"architecture": "amd64", "os": "linux"}),
    ], docker=True)
    b.add("docker-list", top_chain_id=top, tree={"marker": f("amd64\n")}, exact=True)

    repo = "%s/no-platform" % REPO
    image, top = marked(repo, "no platform\n")
    push_index("no-platform", [attestation_for(b, repo, image), image])
    b.add("no-platform", top_chain_id=top, tree={"marker": f("no platform\n")}, exact=True)

    # cosign: the image, and its signature and attestation under sha256-<hex>.sig/.att tags.
    repo = "%s/signed" % REPO
    image, top = marked(repo, "signed\n", tag=TAG)
    b.add("signed", top_chain_id=top, tree={"marker": f("signed\n")}, exact=True)
    tag = image["digest"].replace(":", "-")
    for suffix, layer_type in [(".sig", "application/vnd.dev.cosign.simplesigning.v1+json"),
                               (".att", "application/vnd.dsse.envelope.v1+json")]:
        payload = b'{"critical":{"image":{"docker-manifest-digest":"%s"}}}' % (
            image["digest"].encode())
        b.registry.push_blob(repo, payload)
        cfg = json.dumps({"architecture": "", "os": "", "config": {},
                          "rootfs": {"type": "layers", "diff_ids": [sha256(payload)]}}).encode()
        b.registry.push_blob(repo, cfg)
        b.registry.push_manifest(repo, tag + suffix, {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(cfg), "size": len(cfg)},
            "layers": [{"mediaType": layer_type, "digest": sha256(payload),
                        "size": len(payload)}]}, OCI_MANIFEST)
        b.cases.append({"name": "signed" + suffix,
                        "ref": "docker.io/%s:%s" % (repo, tag + suffix),
                        "refused": 'layer has media type "%s"' % layer_type,
                        "code": "FailedPrecondition"})

    # OCI artifacts that are not images: stored as files, one folder per blob (for image
    # volumes), named by the blob's title annotation or, without one, its digest.
    helm_config = "application/vnd.cncf.helm.config.v1+json"
    chart = Layer(tar(entry("chart/Chart.yaml", b"name: x\n")),
                  media_type="application/vnd.cncf.helm.chart.content.v1.tar+gzip")
    b.image("%s/artifact-helm" % REPO, [chart], config_media_type=helm_config,
            config_bytes=b'{"name":"x","version":"1.0.0"}')
    artifact_file(b, "artifact-helm", chart)
    wasm = Layer.__new__(Layer)
    wasm.blob, wasm.diff_id = b"\0asm\1\0\0\0", sha256(b"\0asm\1\0\0\0")
    wasm.media_type, wasm.digest = "application/wasm", sha256(wasm.blob)
    b.image("%s/artifact-empty-config" % REPO, [wasm],
            config_media_type="application/vnd.oci.empty.v1+json", config_bytes=b"{}",
            artifact_type="application/vnd.example.wasm.v1")
    artifact_file(b, "artifact-empty-config", wasm)


def artifact_file(b, name, layer):
    """An artifact of one untitled blob: one folder holding the blob as sha256-<hex>."""
    file = layer.digest.replace(":", "-", 1)
    b.add(name, top_chain_id=sha256(("ferrocri artifact file %s %s" % (file, layer.digest)).encode()),
          tree={file: {"type": "file", "mode": 0o644, "sha256": layer.digest,
                       "size": len(layer.blob)}}, exact=True)


def attestation_for(b, repo, image):
    """A BuildKit-style attestation entry (no platform here, only the annotation)."""
    statement = b'{"_type":"https://in-toto.io/Statement/v0.1","for":"%s"}' % (
        image["digest"].encode())
    b.registry.push_blob(repo, statement)
    b.registry.push_blob(repo, b"{}")
    digest, size = b.registry.push_manifest(repo, "attestation", {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(b"{}"), "size": 2},
        "layers": [{"mediaType": "application/vnd.in-toto+json", "digest": sha256(statement),
                    "size": len(statement)}]}, OCI_MANIFEST)
    return {"mediaType": OCI_MANIFEST, "digest": digest, "size": size,
            "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                            "vnd.docker.reference.digest": image["digest"]}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--registry", default="127.0.0.1:5000")
    parser.add_argument("--out", help="where to write the cases and their expectations (JSON)")
    args = parser.parse_args()
    b = Builder(Registry(args.registry))
    layer_cases(b)
    manifest_cases(b)
    text = json.dumps({"cases": b.cases}, indent=1, sort_keys=True)
    if args.out:
        with open(args.out, "w") as out:
            out.write(text + "\n")
    for case in b.cases:
        print("pushed %s" % case["ref"], file=sys.stderr)


if __name__ == "__main__":
    main()
