#!/usr/bin/env python3
"""Print the layer chain IDs of an image in a plain-HTTP registry, top-most layer first.

    hack/image-chain-ids.py 127.0.0.1:5000 matrix/docker-classic:1

For an index, the linux/amd64 image. A chain ID names the unpacked layer directory
ferrocri keeps (<root_dir>/layers/sha256/<chain ID hex>), so the output lists the
overlay lower directories of the image's root file system. Standard library only.
"""

import hashlib
import json
import sys
import urllib.request

MANIFESTS = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])


def get(url, accept=None):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: image-chain-ids.py REGISTRY REPO:TAG")
    registry, ref = sys.argv[1], sys.argv[2]
    repo, tag = ref.rsplit(":", 1)
    base = "http://%s/v2/%s" % (registry, repo)
    manifest = get("%s/manifests/%s" % (base, tag), MANIFESTS)
    if "manifests" in manifest:
        child = next(m for m in manifest["manifests"]
                     if m.get("platform", {}).get("os") == "linux"
                     and m.get("platform", {}).get("architecture") == "amd64")
        manifest = get("%s/manifests/%s" % (base, child["digest"]), MANIFESTS)
    config = get("%s/blobs/%s" % (base, manifest["config"]["digest"]))
    chain = []
    for diff_id in config["rootfs"]["diff_ids"]:
        if chain:
            diff_id = "sha256:" + hashlib.sha256(("%s %s" % (chain[-1], diff_id)).encode()).hexdigest()
        chain.append(diff_id)
    for chain_id in reversed(chain):
        print(chain_id.split(":", 1)[1])


if __name__ == "__main__":
    main()
