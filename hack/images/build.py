#!/usr/bin/env python3
"""Build the critest image set offline and push it to a local registry.

Called by hack/build-test-images.sh, which prepares the inputs (Debian's
busybox unpacked with dpkg -x, and the static helpers from hack/images/src).
Standard library only.

Every image is built from fixed inputs with fixed metadata (mtimes, owners,
entry order, `created`, gzip header), so a rebuild on the same host packages
yields the same digests.  Images share one base layer ("bb") and add a small
layer of their own.  Each upstream reference is pushed under its path without
the registry host, which is what a hosts.toml mirror for that host asks for:
registry.k8s.io/e2e-test-images/busybox:1.29-2 -> <registry>/e2e-test-images/busybox:1.29-2.
"""

import argparse
import gzip
import hashlib
import http.client
import io
import json
import os
import subprocess
import sys
import tarfile
import urllib.parse

MTIME = 1704067200  # 2024-01-01T00:00:00Z, for every tar entry
CREATED = "2024-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])

# Applets critest runs inside its containers (pkg/validate), plus httpd for
# the httpd image.  pgrep, pkill and ipcs come from the static helper.
NEEDED_APPLETS = """sh top echo sleep ls cat id hostname netstat pidof brctl ping
touch mount dd grep seq sync mkdir httpd chmod pgrep ipcs""".split()
HELPER_APPLETS = ["pgrep", "pkill", "ipcs"]

# Like the upstream busybox image's account files.
PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
"""
GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nobody:x:65534:
nogroup:x:65534:
"""

# Directories of the base layer and their modes; upper layers reuse these
# modes for parent directories so they never change a lower directory.
BASE_DIRS = {
    "bin": 0o755, "dev": 0o755, "etc": 0o755, "home": 0o755, "lib": 0o755,
    "lib64": 0o755, "proc": 0o555, "root": 0o700, "sys": 0o555, "tmp": 0o1777,
    "usr": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755, "usr/local": 0o755,
    "usr/local/bin": 0o755, "usr/local/sbin": 0o755, "var": 0o755,
    "var/run": 0o755, "var/spool": 0o755, "var/spool/mail": 0o755,
    "var/tmp": 0o1777, "var/www": 0o755,
}

HTTPD_FOREGROUND = """#!/bin/sh
# Stand-in for the httpd image's entrypoint: announce, then serve on :80.
# sh stays PID 1 so SIGTERM ends the container at once.
echo "httpd: busybox httpd serving /usr/local/apache2/htdocs on port 80"
trap 'kill $pid 2>/dev/null; exit 0' TERM INT
httpd -f -p 80 -h /usr/local/apache2/htdocs &
pid=$!
wait $pid
"""


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- layers

class Layer:
    """A layer: entries -> deterministic tar, plus its compressed blob."""

    def __init__(self, name, entries, compression="gzip"):
        self.name = name
        self.entries = entries  # kept for writers that stage the layer as files (umoci)
        self.tar = make_tar(entries)
        self.diff_id = sha256(self.tar)
        self.compression = compression
        self.blob = gzip_bytes(self.tar) if compression == "gzip" else self.tar
        self.digest = sha256(self.blob)

    def media_type(self, oci):
        if self.compression == "gzip":
            return OCI_LAYER_GZIP if oci else DOCKER_LAYER_GZIP
        if not oci:
            raise ValueError("uncompressed layers are only used in OCI manifests")
        return OCI_LAYER

    def recompressed(self, compression):
        """The same tar (same diff_id) stored with another compression."""
        other = object.__new__(Layer)
        other.name, other.tar, other.diff_id = self.name, self.tar, self.diff_id
        other.entries = self.entries
        other.compression = compression
        other.blob = gzip_bytes(self.tar) if compression == "gzip" else self.tar
        other.digest = sha256(other.blob)
        return other


def make_tar(entries):
    """entries: dicts with path, type (dir|file|link), mode, uid, gid, data/target.

    Sorted by path with hard links last, so every link follows its target;
    all timestamps and owner names fixed.
    """
    buf = io.BytesIO()
    order = sorted((e for e in entries if e["type"] != "link"), key=lambda e: e["path"])
    order += sorted((e for e in entries if e["type"] == "link"), key=lambda e: e["path"])
    seen = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in order:
            if e["path"] in seen:
                raise ValueError("duplicate tar entry " + e["path"])
            seen.add(e["path"])
            ti = tarfile.TarInfo(e["path"])
            ti.mtime = MTIME
            ti.uid = e.get("uid", 0)
            ti.gid = e.get("gid", 0)
            ti.uname = ti.gname = ""
            ti.mode = e.get("mode", 0o644)
            data = None
            if e["type"] == "dir":
                ti.type = tarfile.DIRTYPE
            elif e["type"] == "link":
                ti.type = tarfile.LNKTYPE
                ti.linkname = e["target"]
            else:
                ti.type = tarfile.REGTYPE
                data = e["data"]
                ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def gzip_bytes(data, level=9):
    out = io.BytesIO()
    # mtime=0 and no file name keep the gzip header constant.
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=level) as g:
        g.write(data)
    return out.getvalue()


def d(path, mode=None, uid=0, gid=0):
    return {"path": path, "type": "dir", "uid": uid, "gid": gid,
            "mode": BASE_DIRS.get(path, 0o755) if mode is None else mode}


def f(path, data, mode=0o644, uid=0, gid=0):
    if isinstance(data, str):
        data = data.encode()
    return {"path": path, "type": "file", "data": data, "mode": mode, "uid": uid, "gid": gid}


def hardlink(path, target):
    return {"path": path, "type": "link", "target": target, "mode": 0o755}


def with_parents(entries):
    """Add missing parent directories (with base-layer modes) to an upper layer."""
    have = {e["path"] for e in entries}
    extra = []
    for e in entries:
        parts = e["path"].split("/")[:-1]
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p not in have:
                have.add(p)
                extra.append(d(p))
    return entries + extra


def read_file(path):
    with open(path, "rb") as fh:
        return fh.read()


def shared_libs(binary):
    """Paths the dynamic loader uses for `binary`, from ldd (libs + interpreter)."""
    out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts:
            target = parts[parts.index("=>") + 1]
            if target.startswith("/"):
                libs.append(target)
        elif parts and parts[0].startswith("/"):
            libs.append(parts[0])
    if not libs:
        raise SystemExit("ldd found no shared libraries for %s; is it the dynamic busybox?" % binary)
    return sorted(set(libs))


def base_layer(busybox_root, bindir):
    busybox = os.path.join(busybox_root, "bin", "busybox")
    applets = subprocess.run([busybox, "--list"], check=True, capture_output=True,
                             text=True).stdout.split()
    missing = [a for a in NEEDED_APPLETS if a not in applets and a not in HELPER_APPLETS]
    if missing:
        raise SystemExit("busybox lacks applets %s: add them to hack/images/src/procipc.c" % missing)
    entries = [d(p) for p in BASE_DIRS]
    entries.append(f("bin/busybox", read_file(busybox), 0o755))
    # Every applet is a hard link, so PATH lookups hit real files (MaskedPaths
    # masks /bin/ls and expects "Permission denied" from sh).
    for a in applets:
        if a not in ("busybox",) and a not in HELPER_APPLETS:
            entries.append(hardlink("bin/" + a, "bin/busybox"))
    entries.append(f("bin/pgrep", read_file(os.path.join(bindir, "procipc")), 0o755))
    entries += [hardlink("bin/" + a, "bin/pgrep") for a in HELPER_APPLETS if a != "pgrep"]
    lib_dirs = set()
    for lib in shared_libs(busybox):
        rel = lib.lstrip("/")
        parent = os.path.dirname(rel)
        if parent not in BASE_DIRS and parent not in lib_dirs:
            lib_dirs.add(parent)
            entries.append(d(parent))
        entries.append(f(rel, read_file(os.path.realpath(lib)),
                         os.stat(os.path.realpath(lib)).st_mode & 0o7777))
    entries += [f("etc/passwd", PASSWD), f("etc/group", GROUP),
                f("etc/shadow", "".join(l.split(":")[0] + ":*:10933:0:99999:7:::\n"
                                        for l in PASSWD.splitlines()), 0o640)]
    return Layer("bb", entries), applets


def marker_layer(name):
    return Layer("marker " + name, [f(name, b"")])


# ---------------------------------------------------------------- images

class Image:
    """One platform image: layers + config, in Docker schema2 or OCI form."""

    def __init__(self, layers, config, oci, arch="amd64", variant=None):
        self.layers, self.oci = layers, oci
        self.arch, self.variant = arch, variant
        cfg = {"architecture": arch}
        if variant:
            cfg["variant"] = variant
        cfg.update({
            "config": config,
            "created": CREATED,
            "history": [{"created": CREATED, "created_by": "hack/images/build.py: " + l.name}
                        for l in layers],
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [l.diff_id for l in layers]},
        })
        self.config_obj = cfg
        self.config = canonical(cfg)
        self.config_digest = sha256(self.config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST if oci else DOCKER_MANIFEST,
            "config": {"mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
                       "size": len(self.config), "digest": self.config_digest},
            "layers": [{"mediaType": l.media_type(oci), "size": len(l.blob), "digest": l.digest}
                       for l in layers],
        }
        self.media_type = manifest["mediaType"]
        self.manifest = canonical(manifest)
        self.digest = sha256(self.manifest)

    def platform(self):
        p = {"architecture": self.arch, "os": "linux"}
        if self.variant:
            p["variant"] = self.variant
        return p

    def blobs(self):
        return [(l.digest, l.blob) for l in self.layers] + [(self.config_digest, self.config)]


class Index:
    """A multi-platform image: Docker manifest list or OCI index."""

    def __init__(self, images, oci):
        self.children = images
        self.media_type = OCI_INDEX if oci else DOCKER_LIST
        self.manifest = canonical({
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "manifests": [{"mediaType": i.media_type, "size": len(i.manifest),
                           "digest": i.digest, "platform": i.platform()} for i in images],
        })
        self.digest = sha256(self.manifest)


def canonical(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def bb_config(**extra):
    cfg = {"Env": [PATH_ENV], "Cmd": ["sh"]}
    cfg.update(extra)
    return cfg


def image_set(base, bins, bench_layers):
    """(upstream references, image or index) for every image critest uses."""
    gcr = "gcr.io/k8s-staging-cri-tools/"
    e2e = "registry.k8s.io/e2e-test-images/"
    nginx = Layer("nginx stand-in", with_parents([f("usr/sbin/nginx", bins["nginx"], 0o755)]))
    httpd = Layer("httpd stand-in", with_parents([
        f("usr/local/bin/httpd-foreground", HTTPD_FOREGROUND, 0o755),
        d("usr/local/apache2"), d("usr/local/apache2/htdocs"),
        f("usr/local/apache2/htdocs/index.html", "<html><body><h1>It works!</h1></body></html>\n"),
    ]))
    nnp = Layer("nnp", with_parents([f("usr/local/bin/nnp", bins["nnp"], 0o4755)]))
    echo = Layer("echo server", with_parents([f("usr/local/bin/echo-server", bins["echo"], 0o755)]))
    group = Layer("predefined group", with_parents([
        f("etc/passwd", PASSWD + "default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n"),
        f("etc/group", GROUP + "default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n"),
        d("home/default-user", 0o755, 1000, 1000),
    ]))
    pause = Layer("pause", [f("pause", bins["pause"], 0o755)])
    nginx_cfg = lambda port, env: {"Env": [PATH_ENV] + env, "Cmd": ["nginx", "-g", "daemon off;"],
                                   "ExposedPorts": {"%d/tcp" % port: {}}}

    def multi(layers, config, oci, arm_variant):
        return Index([Image(layers, config, oci),
                      Image(layers, config, oci, "arm64", arm_variant)], oci)

    def label(ref):
        # Distinct config (so distinct image ID) for images that are plain bb
        # upstream too; removing one by name must not remove the others.
        return bb_config(Labels={"io.ferrocri.test-image": ref})

    out = [
        ([e2e + "busybox:1.29-2"], multi([base], bb_config(), False, "v8")),
        ([e2e + "nginx:1.14-2"], Image([base, nginx], nginx_cfg(80, []), True)),
        ([gcr + "hostnet-nginx-amd64:latest"],
         Image([base, nginx], nginx_cfg(12003, ["NGINX_PORT=12003"]), False)),
        ([e2e + "httpd:2.4.39-4"],
         Image([base, httpd], {"Env": [PATH_ENV], "Cmd": ["httpd-foreground"],
                               "ExposedPorts": {"80/tcp": {}}}, False)),
        # ferrocri's own: a TCP echo server on 9000 for the port-forward tests.
        (["docker.io/ferrocri/echo:1"],
         Image([base, echo], {"Env": [PATH_ENV], "Cmd": ["echo-server", "9000"],
                              "ExposedPorts": {"9000/tcp": {}}}, True)),
        ([e2e + "nonewprivs:1.3"], Image([base, nnp], {"Env": [PATH_ENV], "Cmd": ["nnp"]}, True)),
        ([gcr + "test-image-user-uid:latest"], Image([base], bb_config(User="1002"), False)),
        ([gcr + "test-image-user-username:latest"], Image([base], bb_config(User="www-data"), True)),
        ([gcr + "test-image-user-uid-group:latest"], Image([base], bb_config(User="1003:1004"), False)),
        ([gcr + "test-image-user-username-group:latest"],
         Image([base], bb_config(User="www-data:1004"), True)),
        ([gcr + "test-image-predefined-group:latest"], Image([base, group], bb_config(User="1000"), True)),
        ([gcr + "test-image-1:latest"], Image([base, marker_layer("test-image-1")], bb_config(), False)),
        ([gcr + "test-image-2:latest"], Image([base, marker_layer("test-image-2")], bb_config(), True)),
        ([gcr + "test-image-3:latest"], Image([base, marker_layer("test-image-3")], bb_config(), False)),
        ([gcr + "test-image-latest:latest"],
         Image([base, marker_layer("test-image-latest")], bb_config(), True)),
        ([gcr + "test-image-tags:1", gcr + "test-image-tags:2", gcr + "test-image-tags:3"],
         Image([base, marker_layer("same-image")], bb_config(), True)),
        ([gcr + "test-image-tag:test"], Image([base, marker_layer("test")], bb_config(), False)),
        ([gcr + "test-image-tag:all"], Image([base, marker_layer("all")], bb_config(), True)),
        # Same bytes under both registries' names (one local path).
        (["registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9"],
         multi([pause], {"Entrypoint": ["/pause"], "User": "65535", "Env": [PATH_ENV]}, True, "v8")),
    ]
    for tag in ["1.35.0-glibc", "1-uclibc", "1", "1-glibc", "1-musl"]:
        ref = "public.ecr.aws/docker/library/busybox:" + tag
        out.append(([ref], Image([base], label(ref), False)))
    # Uncompressed layer: same diff_id as bb, different blob.
    ref = "docker.io/library/busybox:latest"
    out.append(([ref], Image([base.recompressed(None)], label(ref), True)))
    if bench_layers:
        out.append((["ferrocri/bench-large:latest"],
                     Image([base] + bench_layers, bb_config(), False)))
    return out


def local_path(ref):
    """registry.k8s.io/a/b:t -> (a/b, t): the path a hosts.toml mirror is asked for."""
    name, tag = ref.rsplit(":", 1)
    first, rest = name.split("/", 1)
    if "." in first or ":" in first or first == "localhost":
        name = rest
    return name, tag


def bench_layers(cache, count=5, size=21 << 20, files=4):
    """Incompressible, deterministic layers for pull benchmarks (cached on disk)."""
    layers = []
    os.makedirs(cache, exist_ok=True)
    for i in range(count):
        path = os.path.join(cache, "layer-%d.tar" % i)
        if not os.path.exists(path):
            log("generating bench layer %d (%d MiB)" % (i, size >> 20))
            stream = hashlib.shake_128(b"ferrocri bench layer %d" % i).digest(size)
            part = size // files
            entries = [d("bench")] + [f("bench/layer-%d-part-%d.bin" % (i, j),
                                        stream[j * part:(j + 1) * part]) for j in range(files)]
            with open(path + ".tmp", "wb") as fh:
                fh.write(make_tar(entries))
            os.replace(path + ".tmp", path)
        layer = object.__new__(Layer)
        layer.name = "bench layer %d" % i
        layer.tar = read_file(path)
        layer.diff_id = sha256(layer.tar)
        # gzip -1: random data stays the same size; no point spending CPU on it.
        gz = path + ".gz"
        if not os.path.exists(gz):
            with open(gz + ".tmp", "wb") as fh:
                fh.write(gzip_bytes(layer.tar, 1))
            os.replace(gz + ".tmp", gz)
        layer.compression = "gzip"
        layer.blob = read_file(gz)
        layer.digest = sha256(layer.blob)
        layers.append(layer)
    return layers


# ---------------------------------------------------------------- registry

class Registry:
    """Just enough of the distribution API v2 to push, over one keep-alive connection."""

    def __init__(self, addr):
        self.addr = addr
        host, port = addr.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=120)
        self.where = {}  # blob digest -> a repository that has it (for cross-repo mounts)
        self.uploaded = 0

    def request(self, method, path, body=None, headers=None):
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                return resp.status, resp, data
            except (http.client.HTTPException, ConnectionError):
                # The registry may close an idle keep-alive connection; retry once.
                self.conn.close()
                if attempt == 2:
                    raise

    def _upload_url(self, location, digest):
        u = urllib.parse.urlsplit(location)
        q = (u.query + "&" if u.query else "") + "digest=" + urllib.parse.quote(digest)
        return u.path + "?" + q

    def push_blob(self, repo, digest, data):
        status, _, _ = self.request("HEAD", "/v2/%s/blobs/%s" % (repo, digest))
        if status == 200:
            self.where.setdefault(digest, repo)
            return
        path = "/v2/%s/blobs/uploads/" % repo
        if digest in self.where:
            path += "?" + urllib.parse.urlencode({"mount": digest, "from": self.where[digest]})
        status, resp, body = self.request("POST", path, b"", {"Content-Length": "0"})
        if status == 201:  # mounted from another repository, no upload needed
            return
        if status != 202:
            raise SystemExit("starting upload to %s failed: %d %s" % (repo, status, body[:200]))
        status, _, body = self.request(
            "PUT", self._upload_url(resp.getheader("Location"), digest), data,
            {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))})
        if status != 201:
            raise SystemExit("uploading %s to %s failed: %d %s" % (digest, repo, status, body[:200]))
        self.uploaded += len(data)
        self.where.setdefault(digest, repo)

    def push_manifest(self, repo, ref, media_type, data):
        status, resp, _ = self.request("HEAD", "/v2/%s/manifests/%s" % (repo, ref), None,
                                       {"Accept": ACCEPT})
        if status == 200 and resp.getheader("Docker-Content-Digest") == sha256(data):
            return
        status, resp, body = self.request("PUT", "/v2/%s/manifests/%s" % (repo, ref), data,
                                          {"Content-Type": media_type})
        if status != 201:
            raise SystemExit("pushing manifest %s:%s failed: %d %s" % (repo, ref, status, body[:300]))

    def resolve(self, repo, ref):
        status, resp, body = self.request("GET", "/v2/%s/manifests/%s" % (repo, ref), None,
                                          {"Accept": ACCEPT})
        if status != 200:
            raise SystemExit("%s:%s does not resolve: %d" % (repo, ref, status))
        return sha256(body), resp.getheader("Content-Type")


def push(reg, repo, tags, obj):
    images = obj.children if isinstance(obj, Index) else [obj]
    for img in images:
        for digest, data in img.blobs():
            reg.push_blob(repo, digest, data)
    if isinstance(obj, Index):
        for img in images:
            reg.push_manifest(repo, img.digest, img.media_type, img.manifest)
    for tag in tags:
        reg.push_manifest(repo, tag, obj.media_type, obj.manifest)


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--busybox-root", required=True, help="dpkg -x of Debian's busybox package")
    ap.add_argument("--bin", required=True, help="directory with the static helpers")
    ap.add_argument("--cache", required=True, help="build cache directory")
    ap.add_argument("--registry", default="127.0.0.1:5000")
    ap.add_argument("--bench", action="store_true", help="also build ferrocri/bench-large:latest")
    ap.add_argument("--builder", choices=["build.py", "umoci"], default="build.py",
                    help="who writes the images: this script, or umoci + skopeo from the same staged files")
    args = ap.parse_args()
    if args.builder == "umoci" and args.bench:
        raise SystemExit("--bench is only built by build.py's own writer")

    bins = {n: read_file(os.path.join(args.bin, n)) for n in ("nginx", "nnp", "pause", "echo")}
    base, applets = base_layer(args.busybox_root, args.bin)
    log("base layer: %d busybox applets, %d KiB compressed, %s"
        % (len(applets), len(base.blob) >> 10, base.digest))
    bench = bench_layers(os.path.join(args.cache, "bench")) if args.bench else []

    # Group references by local repository: one push per (repo, image).
    plan = {}
    for refs, obj in image_set(base, bins, bench):
        for ref in refs:
            repo, tag = local_path(ref)
            entry = plan.setdefault((repo, obj.digest), {"obj": obj, "tags": [], "refs": []})
            if tag not in entry["tags"]:
                entry["tags"].append(tag)
            entry["refs"].append(ref)
    repos_tags = {}
    for (repo, _), entry in plan.items():
        for tag in entry["tags"]:
            if (repo, tag) in repos_tags:
                raise SystemExit("two different images for %s:%s" % (repo, tag))
            repos_tags[(repo, tag)] = True

    reg = Registry(args.registry)
    umoci = None
    if args.builder == "umoci":
        from umoci_writer import UmociWriter
        umoci = UmociWriter(os.path.join(args.cache, "umoci"), MTIME)
    lines = []
    for (repo, _), entry in plan.items():
        obj = entry["obj"]
        if umoci:
            image = obj.children[0] if isinstance(obj, Index) else obj
            for tag in entry["tags"]:
                umoci.push(image, args.registry, repo, tag)
        else:
            push(reg, repo, entry["tags"], obj)
        for tag in entry["tags"]:
            digest, ctype = reg.resolve(repo, tag)
            if not umoci and digest != obj.digest:
                raise SystemExit("%s:%s resolves to %s, pushed %s" % (repo, tag, digest, entry["obj"].digest))
            upstream = [r for r in entry["refs"] if local_path(r) == (repo, tag)]
            lines.append("%s/%s:%s %s %s %s" % (args.registry, repo, tag, digest, ctype,
                                                 ",".join(upstream)))
    if not umoci:
        log("uploaded %.1f MiB of new blobs" % (reg.uploaded / (1 << 20)))
    report = "\n".join(lines) + "\n"
    with open(os.path.join(args.cache, "images-umoci.txt" if umoci else "images.txt"), "w") as fh:
        fh.write(report)
    sys.stdout.write(report)


if __name__ == "__main__":
    main()
