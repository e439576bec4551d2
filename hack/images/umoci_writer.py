"""Write the critest image set with umoci and skopeo instead of build.py's own writer.

build.py --builder umoci stages the same layers (the same entries, owners, modes and
mtimes) as directory trees and lets the tools make the images: the base layer goes
through `umoci unpack`/`umoci repack` (its tar starts with the root entry "."), every
upper layer is a folder `umoci insert`ed at "/" (root entry "/", and a tar that ends
right after the last file's data), the config comes from `umoci config`, and `skopeo
copy` pushes each image in the form build.py would (OCI or Docker schema 2, an
uncompressed layer where build.py has one). Multi-platform indexes become their amd64
image: umoci writes single-platform images.
"""

import hashlib
import os
import shutil
import subprocess

CREATED = "2024-01-01T00:00:00Z"


def run(*cmd):
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit("%s failed (%d): %s" % (" ".join(cmd), done.returncode,
                                                 (done.stderr or done.stdout).strip()[-600:]))


def materialize(entries, root, mtime):
    """Create a layer's entries beneath root, with their owners, modes and mtime."""
    os.makedirs(root, exist_ok=True)
    os.chmod(root, 0o755)
    order = sorted((e for e in entries if e["type"] != "link"), key=lambda e: e["path"])
    order += [e for e in entries if e["type"] == "link"]
    for e in order:
        path = os.path.join(root, e["path"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if e["type"] == "dir":
            os.makedirs(path, exist_ok=True)
        elif e["type"] == "link":
            os.link(os.path.join(root, e["target"]), path)
            continue  # a hard link shares its target's owner and mode
        else:
            with open(path, "wb") as fh:
                fh.write(e["data"])
        os.chown(path, e.get("uid", 0), e.get("gid", 0))
        os.chmod(path, e["mode"])  # after chown, which clears setuid bits
    # Deepest first, so setting a folder's time is the last change inside it.
    for parent, dirs, files in os.walk(root, topdown=False):
        for name in files:
            os.utime(os.path.join(parent, name), (mtime, mtime), follow_symlinks=False)
        os.utime(parent, (mtime, mtime))


class UmociWriter:
    def __init__(self, workdir, mtime):
        self.work = workdir
        self.mtime = mtime
        self.layout = os.path.join(workdir, "layout")
        self.stacks = {}  # tuple of diff IDs -> the layout tag holding that layer stack
        self.configs = {}  # image key -> the layout tag of the finished image
        if os.path.exists(workdir):
            shutil.rmtree(workdir)
        os.makedirs(workdir)
        run("umoci", "init", "--layout", self.layout)

    def _stack(self, layers):
        key = tuple(l.diff_id for l in layers)
        if key in self.stacks:
            return self.stacks[key]
        tag = "stack-" + hashlib.sha256(" ".join(key).encode()).hexdigest()[:16]
        image = "%s:%s" % (self.layout, tag)
        history = ["--history.created", CREATED, "--history.created_by", "umoci: " + layers[-1].name]
        if len(layers) == 1:
            bundle = os.path.join(self.work, "bundle-" + tag)
            run("umoci", "new", "--image", image)
            run("umoci", "unpack", "--image", image, bundle)
            materialize(layers[0].entries, os.path.join(bundle, "rootfs"), self.mtime)
            run("umoci", "repack", *history, "--image", image, bundle)
            shutil.rmtree(bundle)
        else:
            parent = self._stack(layers[:-1])
            folder = os.path.join(self.work, "layer-" + tag)
            materialize(layers[-1].entries, folder, self.mtime)
            run("umoci", "insert", *history, "--image", "%s:%s" % (self.layout, parent),
                "--tag", tag, folder, "/")
        self.stacks[key] = tag
        return tag

    def image(self, img):
        """The layout tag of a finished image (layers + config) for build.py's Image."""
        if img.digest in self.configs:
            return self.configs[img.digest]
        stack = self._stack(img.layers)
        tag = "image-" + img.digest.split(":")[1][:16]
        cfg = img.config_obj["config"]
        args = ["--image", "%s:%s" % (self.layout, stack), "--tag", tag,
                "--created", CREATED, "--history.created", CREATED,
                "--architecture", img.arch, "--os", "linux"]
        for key, flag in (("Env", "--config.env"), ("Cmd", "--config.cmd"),
                          ("Entrypoint", "--config.entrypoint")):
            for value in cfg.get(key, []):
                args += [flag, value]
        if "User" in cfg:
            args += ["--config.user", cfg["User"]]
        for name, value in sorted(cfg.get("Labels", {}).items()):
            args += ["--config.label", "%s=%s" % (name, value)]
        for port in sorted(cfg.get("ExposedPorts", {})):
            args += ["--config.exposedports", port]
        run("umoci", "config", *args)
        self.configs[img.digest] = tag
        return tag

    def push(self, img, registry, repo, tag):
        """skopeo copy to <registry>/<repo>:<tag>, in build.py's manifest form."""
        source = "oci:%s:%s" % (self.layout, self.image(img))
        args = ["skopeo", "copy", "--insecure-policy", "--dest-tls-verify=false",
                "--format", "oci" if img.oci else "v2s2"]
        if any(l.compression is None for l in img.layers):
            args.append("--dest-decompress")
        run(*args, source, "docker://%s/%s:%s" % (registry, repo, tag))
