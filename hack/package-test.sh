#!/usr/bin/env bash
# Builds the .deb (hack/package.sh), checks what it holds, then installs it for real on this
# machine with apt-get, runs the installed daemon on a private root and socket (crictl info,
# a host-network pod whose container prints a line: the daemon finds /usr/bin/ferrocri-monitor
# beside itself), renders the man page, runs `ferrocri check`, and removes then purges it.
# Checks that remove keeps the conffile and /var/lib/ferrocri, that purge deletes them, and
# that nothing else changed (hack/up.sh's /usr/local/bin install, /etc/crictl.yaml, the CNI
# configuration). Needs root, the local registry with the test images (hack/test.sh), and no
# ferrocri package or /var/lib/ferrocri on the machine beforehand.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
export LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive

fail() {
	echo "package test: $*" >&2
	exit 1
}
expect() { # expect <what> <wanted substring> <output>
	[[ "$3" == *"$2"* ]] || fail "$1: wanted '$2', got '$3'"
}

dpkg-query -W -f='${Status}' ferrocri 2>/dev/null | grep -q 'installed\|config-files' &&
	fail "a ferrocri package is already on this machine; this test installs and purges its own"
for d in /var/lib/ferrocri /etc/ferrocri; do
	[ -e "$d" ] && fail "$d exists (another install's state); purging the package would delete it"
done

# What must survive install, remove and purge untouched.
watched=(/usr/local/bin/ferrocri /usr/local/bin/ferrocri-monitor /etc/crictl.yaml
	/etc/systemd/system/ferrocri.service /etc/cni/net.d)
snapshot() {
	for f in "${watched[@]}"; do
		if [ -d "$f" ]; then
			find "$f" -type f -print0 | sort -z | xargs -0r md5sum
		elif [ -e "$f" ]; then md5sum "$f"; else echo "absent $f"; fi
	done
}
before=$(snapshot)

t0=$SECONDS
deb=$(hack/package.sh | tail -n 1)
echo "package test: built $deb in $((SECONDS - t0))s ($(du -h "$deb" | cut -f1))"
version=$(awk -F'"' '/^version *=/ { print $2; exit }' Cargo.toml)
[ "$(basename "$deb")" = "ferrocri_${version}_$(dpkg --print-architecture).deb" ] || fail "file name $deb"

# The archive: control fields, conffiles, maintainer scripts and the file list.
info=$(dpkg-deb --info "$deb")
expect "Package" "Package: ferrocri" "$info"
expect "Version" "Version: $version" "$info"
expect "Depends" "libseccomp2" "$info"
expect "Depends" "libc6" "$info"
expect "Recommends" "Recommends: containernetworking-plugins" "$info"
[[ "$info" == *libsqlite3* ]] && fail "Depends names libsqlite3, but SQLite is built in: $info"
for script in postinst prerm postrm conffiles md5sums; do expect "control member" " $script" "$info"; done
[ "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" = /etc/ferrocri/config.toml ] || fail "conffiles"
contents=$(dpkg-deb --contents "$deb")
for f in ./usr/bin/ferrocri ./usr/bin/ferrocri-monitor ./lib/systemd/system/ferrocri.service \
	./etc/ferrocri/config.toml ./usr/share/man/man8/ferrocri.8.gz ./usr/share/man/man8/ferrocri-monitor.8.gz ./usr/share/man/man8/ferrocri-check.8.gz ./usr/share/doc/ferrocri/crictl.yaml \
	./usr/share/doc/ferrocri/copyright ./usr/share/doc/ferrocri/changelog.gz \
	./usr/share/bash-completion/completions/ferrocri ./usr/share/zsh/vendor-completions/_ferrocri \
	./usr/share/fish/vendor_completions.d/ferrocri.fish; do
	grep -q " $f\$" <<<"$contents" || fail "$f missing from the package"
done
grep -q ' ./etc/crictl.yaml$' <<<"$contents" && fail "the package must not ship /etc/crictl.yaml"
grep -q ' root/root ' <<<"$contents" || fail "files not owned by root: $contents"
[ "$(grep -v ' root/root ' <<<"$contents" | wc -l)" = 0 ] || fail "files not owned by root"
grep -q '^-rwxr-xr-x .* ./usr/bin/ferrocri-monitor$' <<<"$contents" || fail "ferrocri-monitor mode"
if command -v lintian >/dev/null; then
	# Any error or warning fails, except the placeholder maintainer address package.sh uses
	# when DEBEMAIL is unset (the project has no mail address to put there).
	suppress=()
	[ -z "${DEBEMAIL:-}" ] && suppress=(--suppress-tags bogus-mail-host,bogus-mail-host-in-debian-changelog)
	lint=$(lintian --fail-on error,warning "${suppress[@]}" "$deb" 2>&1) || fail "lintian: $lint"
fi
unit=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./lib/systemd/system/ferrocri.service)
expect "unit" $'\nExecStart=/usr/bin/ferrocri\n' "$unit"

work=$(mktemp -d /tmp/ferrocri-package-test.XXXXXX)
daemon=
cleanup() {
	if [ -n "$daemon" ]; then
		crictl --runtime-endpoint "unix://$work/s.sock" rmp -fa >/dev/null 2>&1 || true
		kill -TERM "$daemon" 2>/dev/null || true
		wait "$daemon" 2>/dev/null || true
	fi
	# Leave the machine as it was, whatever failed.
	if dpkg-query -W ferrocri >/dev/null 2>&1; then apt-get purge -y -q ferrocri >/dev/null 2>&1 || true; fi
	# /var/lib/ferrocri did not exist before (checked above): what is left is this test's.
	[ "${made_state:-0}" = 1 ] && rm -rf --one-file-system /var/lib/ferrocri
	if [ "${ok:-0}" = 1 ]; then rm -rf "$work"; else echo "package test: logs in $work" >&2; fi
}
trap cleanup EXIT

# Install for real. No systemd here (or in CI): postinst must succeed without starting anything.
apt-get install -y -q "./$deb" >"$work/apt-install.log" 2>&1 || fail "apt-get install: $(tail -n 20 "$work/apt-install.log")"
[ "$(dpkg-query -W -f='${Status}' ferrocri)" = "install ok installed" ] || fail "not installed"
dpkg -L ferrocri >"$work/files"
[ "$(command -v ferrocri)" = /usr/local/bin/ferrocri ] && echo "package test: note: /usr/local/bin/ferrocri (hack/up.sh) comes first in PATH"
/usr/bin/ferrocri --version | grep -qx "ferrocri $version" || fail "ferrocri --version"
cmp -s /etc/ferrocri/config.toml <(/usr/bin/ferrocri config default) || fail "/etc/ferrocri/config.toml is not the default"

# The installed daemon, with the installed configuration file plus private paths. It reads
# /etc/ferrocri/config.toml (no --config), so the shipped file is the one parsed.
# The CNI folder is private too: the pod below uses the host network.
mkdir -p "$work/net.d"
/usr/bin/ferrocri --root "$work/root" --state "$work/state" --socket "$work/s.sock" \
	config show >"$work/config.shown" || fail "config show with the installed file"
sed -e "s#^conf_dir = .*#conf_dir = \"$work/net.d\"#" \
	-e "s#^config_dir = .*#config_dir = \"$repo/hack/certs.d\"#" /etc/ferrocri/config.toml >"$work/config.toml"
grep -q "^conf_dir = \"$work/net.d\"" "$work/config.toml" || fail "no cni conf_dir key in the default config"
grep -q "^config_dir = \"$repo/hack/certs.d\"" "$work/config.toml" || fail "no registry config_dir key in the default config"
/usr/bin/ferrocri --config "$work/config.toml" --root "$work/root" --state "$work/state" \
	--socket "$work/s.sock" 2>"$work/daemon.log" &
daemon=$!
for _ in $(seq 100); do [ -S "$work/s.sock" ] && break; sleep 0.1; done
crictl=(crictl --runtime-endpoint "unix://$work/s.sock" --image-endpoint "unix://$work/s.sock" --timeout 20s)
"${crictl[@]}" info | jq -e '.status.conditions[] | select(.type == "RuntimeReady") | .status' >/dev/null ||
	fail "crictl info: $(cat "$work/daemon.log")"
expect "crictl version" "RuntimeName:  ferrocri" "$("${crictl[@]}" version)"
[ "$(readlink "/proc/$daemon/exe")" = /usr/bin/ferrocri ] || fail "daemon runs $(readlink "/proc/$daemon/exe")"

busybox=registry.k8s.io/e2e-test-images/busybox:1.29-2
"${crictl[@]}" pull "$busybox" >/dev/null || fail "pull $busybox (is the local registry up? hack/registry.sh)"
cat >"$work/pod.json" <<JSON
{"metadata": {"name": "packaged", "namespace": "default", "uid": "packaged-uid"},
 "log_directory": "$work/logs", "linux": {"security_context": {"namespace_options": {"network": 2}}}}
JSON
cat >"$work/ctr.json" <<JSON
{"metadata": {"name": "hello"}, "image": {"image": "$busybox"},
 "command": ["echo", "hello from the package"], "log_path": "hello.log", "linux": {}}
JSON
pod=$("${crictl[@]}" runp "$work/pod.json")
monitor_exe=$(for p in $(pgrep -f "^ferrocri-monitor default/packaged" || true); do readlink "/proc/$p/exe"; done | sort -u)
[ "$monitor_exe" = /usr/bin/ferrocri-monitor ] || fail "pod monitor runs '$monitor_exe'"
ctr=$("${crictl[@]}" create "$pod" "$work/ctr.json" "$work/pod.json")
"${crictl[@]}" start "$ctr" >/dev/null
for _ in $(seq 100); do
	"${crictl[@]}" inspect "$ctr" | grep -q '"state": "CONTAINER_EXITED"' && break
	sleep 0.1
done
expect "container log" "hello from the package" "$("${crictl[@]}" logs "$ctr" 2>&1)"
"${crictl[@]}" rmp -f "$pod" >/dev/null

# `ferrocri check` runs (exit 1 means a requirement failed on this host, not a crash) and
# finds the monitor beside the installed binary.
set +e
/usr/bin/ferrocri --root "$work/root" --state "$work/state" --socket "$work/check.sock" check >"$work/check.out" 2>&1
rc=$?
set -e
[ "$rc" -le 1 ] || fail "ferrocri check exited $rc: $(cat "$work/check.out")"
grep -qx 'ok   monitor binary: /usr/bin/ferrocri-monitor' "$work/check.out" ||
	fail "ferrocri check did not find /usr/bin/ferrocri-monitor: $(cat "$work/check.out")"

kill -TERM "$daemon"
wait "$daemon" || fail "daemon exit status $?: $(tail -n 20 "$work/daemon.log")"
daemon=

# The man page renders, and names the subcommands.
if command -v man >/dev/null; then
	page=$(MANWIDTH=100 man -P cat -l /usr/share/man/man8/ferrocri.8.gz 2>&1)
else
	page=$(zcat /usr/share/man/man8/ferrocri.8.gz | groff -man -Tutf8 2>&1)
fi
expect "man page" "ferrocri - A Kubernetes CRI container runtime" "$page"
expect "man page" "--socket" "$page"
expect "man page" "ferrocri-check(8)" "$page"
page=$(MANWIDTH=100 man -P cat ferrocri-import-containerd 2>&1 || true)
expect "man page of a subcommand, found by man-db" "--namespace" "$page"
[[ "$page" == *warning* ]] && fail "man page warnings: $page"
# The completions load in their shells (bash here; zsh and fish are not installed by default).
bash -c 'source /usr/share/bash-completion/completions/ferrocri && complete -p ferrocri' >/dev/null ||
	fail "bash completion does not load"

# Remove: programs gone, conffile and state kept.
made_state=1
mkdir -p /var/lib/ferrocri && echo state >/var/lib/ferrocri/package-test
apt-get remove -y -q ferrocri >"$work/apt-remove.log" 2>&1 || fail "apt-get remove: $(tail -n 20 "$work/apt-remove.log")"
[ "$(dpkg-query -W -f='${Status}' ferrocri)" = "deinstall ok config-files" ] || fail "status after remove"
for f in /usr/bin/ferrocri /usr/bin/ferrocri-monitor /lib/systemd/system/ferrocri.service \
	/usr/share/man/man8/ferrocri.8.gz /usr/share/bash-completion/completions/ferrocri; do
	[ -e "$f" ] && fail "$f left after remove"
done
[ -f /etc/ferrocri/config.toml ] || fail "remove deleted the conffile"
[ -f /var/lib/ferrocri/package-test ] || fail "remove deleted /var/lib/ferrocri"

# Purge: the conffile and the state go too, and dpkg forgets the package.
apt-get purge -y -q ferrocri >"$work/apt-purge.log" 2>&1 || fail "apt-get purge: $(tail -n 20 "$work/apt-purge.log")"
dpkg-query -W ferrocri >/dev/null 2>&1 && fail "dpkg still knows ferrocri after purge"
for f in /etc/ferrocri /var/lib/ferrocri; do [ -e "$f" ] && fail "$f left after purge"; done
while read -r f; do
	[ "$f" = /. ] && continue
	if [ -e "$f" ] && [ ! -d "$f" ]; then fail "$f left after purge"; fi
done <"$work/files"

[ "$(snapshot)" = "$before" ] || fail "files outside the package changed: $(diff <(echo "$before") <(snapshot))"
ok=1
echo "package test: ok"
