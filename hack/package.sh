#!/usr/bin/env bash
# Builds the Debian package target/debian/ferrocri_<version>_<arch>.deb from a release build:
# both binaries side by side in /usr/bin (the daemon starts ferrocri-monitor from beside
# itself), the systemd unit, the default configuration as a conffile, a man page and shell
# completions generated from the clap command line (examples/gen_docs.rs), and a crictl.yaml
# suggestion under /usr/share/doc (/etc/crictl.yaml belongs to whichever runtime the operator
# picks). Plain dpkg-deb, no cargo-deb: see ARCHITECTURE.md, "Packaging".
# Prints the path of the .deb on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$HOME/.cargo/bin:$PATH
export LC_ALL=C.UTF-8

version=$(awk -F'"' '/^version *=/ { print $2; exit }' Cargo.toml)
arch=$(dpkg --print-architecture)
cargo build --release --locked --bins
# Debug profile on purpose: a release build of an example turns on the dev-dependencies'
# features and would compile the library a second time.
cargo build --locked --example gen_docs

# Timestamps from the last commit, so two builds of one commit give the same files. Set only
# now: build scripts that compile C watch SOURCE_DATE_EPOCH, and cargo would rebuild them.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
# Who builds the package (Debian's variables); set them when publishing it.
maintainer="${DEBFULLNAME:-ferrocri maintainers} <${DEBEMAIL:-ferrocri@localhost}>"

out=target/debian
stage=$out/ferrocri_${version}_${arch}
deb=$out/ferrocri_${version}_${arch}.deb
rm -rf "$stage" "$deb"
mkdir -p "$stage/DEBIAN"
stage=$(cd "$stage" && pwd)

for b in ferrocri ferrocri-monitor; do
	install -D -m 0755 "target/release/$b" "$stage/usr/bin/$b"
	# What dh_strip does: symbols and notes out, the code unchanged.
	strip --strip-unneeded --remove-section=.comment --remove-section=.note "$stage/usr/bin/$b"
done

# The unit as hack/up.sh installs it, pointed at /usr/bin; fail loudly if its ExecStart moved.
install -d "$stage/lib/systemd/system"
sed 's#^ExecStart=/usr/local/bin/ferrocri$#ExecStart=/usr/bin/ferrocri#' hack/ferrocri.service \
	>"$stage/lib/systemd/system/ferrocri.service"
grep -qx 'ExecStart=/usr/bin/ferrocri' "$stage/lib/systemd/system/ferrocri.service" || {
	echo "package.sh: hack/ferrocri.service has no ExecStart=/usr/local/bin/ferrocri line to rewrite" >&2
	exit 1
}
chmod 0644 "$stage/lib/systemd/system/ferrocri.service"

install -d "$stage/etc/ferrocri"
"$stage/usr/bin/ferrocri" config default >"$stage/etc/ferrocri/config.toml"
chmod 0644 "$stage/etc/ferrocri/config.toml"
echo /etc/ferrocri/config.toml >"$stage/DEBIAN/conffiles"

gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
target/debug/examples/gen_docs "$gen"
install -d "$stage/usr/share/man/man8"
for page in "$gen"/*.8; do
	install -m 0644 "$page" "$stage/usr/share/man/man8/"
done
gzip -9n "$stage"/usr/share/man/man8/*.8
install -D -m 0644 "$gen/ferrocri.bash" "$stage/usr/share/bash-completion/completions/ferrocri"
install -D -m 0644 "$gen/_ferrocri" "$stage/usr/share/zsh/vendor-completions/_ferrocri"
install -D -m 0644 "$gen/ferrocri.fish" "$stage/usr/share/fish/vendor_completions.d/ferrocri.fish"
# CDI's YAML parser (serde_yaml_ng) is built on unsafe-libyaml, a Rust translation of libyaml
# linked into the binary as every Rust crate is; there is no shared libyaml to use instead.
mkdir -p "$stage/usr/share/lintian/overrides"
printf '%s\n' '# unsafe-libyaml (Rust port of libyaml), statically linked like all Rust crates' \
	'ferrocri: embedded-library libyaml [usr/bin/ferrocri]' >"$stage/usr/share/lintian/overrides/ferrocri"
chmod 0644 "$stage/usr/share/lintian/overrides/ferrocri"

doc=$stage/usr/share/doc/ferrocri
install -d "$doc"
cat >"$doc/crictl.yaml" <<'YAML'
# crictl's configuration for ferrocri; copy it to /etc/crictl.yaml to make ferrocri
# crictl's default runtime.
runtime-endpoint: unix:///run/ferrocri/ferrocri.sock
image-endpoint: unix:///run/ferrocri/ferrocri.sock
timeout: 10
YAML
cat >"$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ferrocri

Files: *
Copyright: $(date -u +%Y -d "@$SOURCE_DATE_EPOCH") the ferrocri authors
License: Apache-2.0

License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 can be
 found in /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
changelog_date=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
printf 'ferrocri (%s) unstable; urgency=medium\n\n  * Built from %s by hack/package.sh.\n\n -- %s  %s\n' \
	"$version" "$(git rev-parse --short HEAD 2>/dev/null || echo source)" "$maintainer" "$changelog_date" \
	| gzip -9n >"$doc/changelog.gz"
chmod 0644 "$doc"/*

# Depends from the libraries the binaries link, as dpkg-shlibdeps finds them (SQLite is
# built in by rusqlite's `bundled`, so no libsqlite3-0).
shlibs=$(mkdir -p "$gen/shlibs/debian" && cd "$gen/shlibs" &&
	printf 'Source: ferrocri\n\nPackage: ferrocri\nArchitecture: any\n' >debian/control &&
	dpkg-shlibdeps -O "$stage/usr/bin/ferrocri" "$stage/usr/bin/ferrocri-monitor")
depends=${shlibs#shlibs:Depends=}
[ -n "$depends" ] || { echo "package.sh: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
installed_size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)

cat >"$stage/DEBIAN/control" <<CONTROL
Package: ferrocri
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $depends
Recommends: containernetworking-plugins
Suggests: cri-tools
Section: admin
Priority: optional
Description: Kubernetes CRI container runtime
 ferrocri serves the Kubernetes Container Runtime Interface on a unix socket
 (/run/ferrocri/ferrocri.sock): it pulls and stores images, and runs pod
 sandboxes and containers in its own per-pod monitors, without containerd or
 runc. kubelet and crictl talk to it directly.
 .
 This package holds the daemon, the monitor, a systemd unit and the default
 configuration in /etc/ferrocri/config.toml.
CONTROL

install -m 0755 hack/deb/postinst hack/deb/prerm hack/deb/postrm "$stage/DEBIAN/"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
	xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"
find "$stage" -type d -exec chmod 0755 {} +
find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

dpkg-deb --build --root-owner-group -Zxz "$stage" "$deb" >/dev/null
rm -rf "$stage"
if command -v lintian >/dev/null; then
	# Reported, not fatal: the tags that matter are fixed above; see ARCHITECTURE.md.
	lintian --tag-display-limit 0 "$deb" || true
fi
echo "$deb"
