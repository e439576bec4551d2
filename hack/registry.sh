#!/usr/bin/env bash
# Local image registry for offline tests: Debian's docker-registry on 127.0.0.1:5000.
#   hack/registry.sh start|stop|status
# No init system is assumed; the binary runs in the background with a pid file.
# Env: FERROCRI_REGISTRY_ADDR (default 127.0.0.1:5000); FERROCRI_REGISTRY_ROOT runs a
# separate instance with its storage, config, log and pid file all in that folder
# (e.g. a second registry on 127.0.0.1:5001 that a test may fill without touching the first).
set -euo pipefail

ADDR=${FERROCRI_REGISTRY_ADDR:-127.0.0.1:5000}
if [ -n "${FERROCRI_REGISTRY_ROOT:-}" ]; then
	ROOT=$FERROCRI_REGISTRY_ROOT
	LOG=$ROOT/registry.log
	PIDFILE=$ROOT/registry.pid
else
	ROOT=/var/lib/ferrocri-test-registry
	LOG=/var/log/ferrocri-test-registry.log
	PIDFILE=/run/ferrocri-test-registry.pid
fi
CONFIG=$ROOT/config.yml

find_registry() {
	local b
	# The package ships it as /usr/bin/docker-registry; ask dpkg in case that moves.
	b=$(dpkg-query -L docker-registry 2>/dev/null | grep -m1 '/bin/docker-registry$' || true)
	[ -n "$b" ] || b=$(command -v docker-registry || true)
	if [ -z "$b" ] || [ ! -x "$b" ]; then
		echo "docker-registry not installed (run hack/install-deps.sh)" >&2
		return 1
	fi
	echo "$b"
}

running_pid() {
	local pid
	[ -f "$PIDFILE" ] || return 1
	pid=$(cat "$PIDFILE")
	# Guard against a stale pid file whose pid got reused by something else.
	[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep docker-registry >/dev/null || return 1
	echo "$pid"
}

answers() { curl -fsS -o /dev/null --max-time 2 "http://$ADDR/v2/" 2>/dev/null; }

write_config() {
	mkdir -p "$ROOT/data"
	# Plain HTTP, no auth, delete enabled so tests can clean up; the in-memory
	# blob descriptor cache would hide blobs deleted behind its back, so no cache.
	cat >"$CONFIG.tmp" <<EOF
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $ROOT/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $ADDR
  headers:
    X-Content-Type-Options: [nosniff]
EOF
	mv "$CONFIG.tmp" "$CONFIG"
}

start() {
	local bin pid
	if pid=$(running_pid); then
		answers && {
			echo "registry already running (pid $pid) on $ADDR"
			return 0
		}
	elif answers; then
		echo "something else already answers on $ADDR; not starting a second registry" >&2
		return 1
	fi
	bin=$(find_registry)
	write_config
	mkdir -p "$(dirname "$LOG")"
	# setsid: detach from the caller's session so the registry outlives the
	# script (and CI step) that started it.
	setsid "$bin" serve "$CONFIG" >>"$LOG" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
	for _ in $(seq 1 100); do
		if answers; then
			echo "registry started (pid $(cat "$PIDFILE")) on $ADDR, storage $ROOT/data, log $LOG"
			return 0
		fi
		running_pid >/dev/null || break
		sleep 0.1
	done
	echo "registry did not come up; last log lines:" >&2
	tail -n 20 "$LOG" >&2 || true
	return 1
}

stop() {
	local pid
	if ! pid=$(running_pid); then
		rm -f "$PIDFILE"
		echo "registry not running"
		return 0
	fi
	kill "$pid"
	for _ in $(seq 1 50); do
		[ -d "/proc/$pid" ] || break
		sleep 0.1
	done
	if [ -d "/proc/$pid" ]; then
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$PIDFILE"
	echo "registry stopped"
}

status() {
	local pid
	if pid=$(running_pid) && answers; then
		echo "registry running (pid $pid) on $ADDR"
	else
		echo "registry not running"
		return 3
	fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*)
	echo "usage: $0 start|stop|status" >&2
	exit 2
	;;
esac
