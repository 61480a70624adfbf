#!/usr/bin/env bash
# `make demo`: etcd as a system container, end to end, printed like a tutorial, pulled from a
# registry that is a system container too (images/registry).
#
# Where: on this host's systemd when PID 1 is systemd (after asking), otherwise - or with
# `tests/demo.sh --testbed` / `make demo DEMO_TESTBED=1` - on a throwaway systemd booted by
# tests/testbed/testbed.
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKOUT=$PWD
export HOIST_BIN="$CHECKOUT/target/release/hoist"
ETCD_ARCHIVE="$CHECKOUT/target/images/etcd.tar"
REGISTRY_ARCHIVE="$CHECKOUT/target/images/registry.tar"
REG_NAME=demo-registry

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say() { printf '%s\n' "$*"; }

use_testbed=${DEMO_TESTBED:-}
[ "${1:-}" = --testbed ] && use_testbed=1
if [ -z "$use_testbed" ]; then
  if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
    if [ -t 0 ]; then
      read -r -p "PID 1 is systemd: install a registry (on 127.0.0.1:5055) and etcd as services on THIS host (units, /etc/etcd, /etc/demo-registry, /usr/local/bin/etcdctl; all removed at the end)? [y/N] " answer
      case "$answer" in y|Y|yes) use_testbed=0 ;; *) use_testbed=1 ;; esac
    else
      say "PID 1 is systemd but nobody can confirm touching it: using a throwaway testbed."
      use_testbed=1
    fi
  else
    use_testbed=1
  fi
fi

if [ "$use_testbed" = 1 ]; then
  export HOIST_TESTBED_DIR=${HOIST_TESTBED_DIR:-/var/tmp/hoist-demo-testbed}
  bold "Boot a throwaway systemd (PID 1 of its own namespaces, over an overlay of this host)"
  tests/testbed/testbed down >/dev/null 2>&1 || true
  tests/testbed/testbed up
  trap 'tests/testbed/testbed down >/dev/null 2>&1 || true' EXIT
  X=(tests/testbed/testbed exec)
  say "Every command below runs inside it, exactly as on a systemd host."
else
  X=(env PATH="$(dirname "$HOIST_BIN"):$PATH")
fi
run() { printf '\033[36m# %s\033[0m\n' "$*"; "${X[@]}" "$@"; }

bold "0. A registry to pull from: Debian's docker-registry, itself a system container, fed with the etcd image"
say "(both images built by 'make images': registry.tar from Debian's docker-registry, etcd.tar from etcd-server;"
say " the registry's config is /etc/$REG_NAME/config.yml, its storage /var/lib/$REG_NAME; etcd is pushed with skopeo)"
# A port of its own on this host (a registry may already use 5000); the testbed has its own network.
if [ "$use_testbed" = 1 ]; then REG_ADDR=127.0.0.1:5000; else REG_ADDR=127.0.0.1:5055; fi
# Removed on any exit, but only once this demo installed it (never a container of the same name
# that was there before).
reg_installed=""
# The registries.conf drop-in that declares it (removed too, only if this demo wrote it).
DROPIN=/etc/containers/registries.conf.d/50-hoist-demo.conf
dropin_written=""
remove_registry() {
  [ -z "$dropin_written" ] || "${X[@]}" rm -f "$DROPIN" || true
  [ -z "$reg_installed" ] || "${X[@]}" hoist -q uninstall --purge "$REG_NAME" >/dev/null 2>&1 || true
}
if [ "$use_testbed" = 1 ]; then
  trap 'remove_registry; tests/testbed/testbed down >/dev/null 2>&1 || true' EXIT
else
  trap remove_registry EXIT
fi
run hoist install --now --name "$REG_NAME" --set "REGISTRY_HTTP_ADDR=$REG_ADDR" "oci-archive:$REGISTRY_ARCHIVE"
reg_installed=1
ok=""
for _ in $(seq 300); do
  if "${X[@]}" curl -fsS -o /dev/null "http://$REG_ADDR/v2/" 2>/dev/null; then ok=1; break; fi
  sleep 0.05
done
[ -n "$ok" ] || { "${X[@]}" journalctl -u "$REG_NAME" --no-pager -o cat | tail -n 20; echo "the registry did not answer on $REG_ADDR" >&2; exit 1; }
ETCD_IMAGE="docker://$REG_ADDR/etcd:3.4"
run skopeo copy -q --dest-tls-verify=false "oci-archive:$ETCD_ARCHIVE" "$ETCD_IMAGE"
run curl -sS "http://$REG_ADDR/v2/_catalog"
run hoist list

bold "1. Declare the registry the way podman and skopeo read it (plain HTTP on loopback: insecure), then pull etcd"
if "${X[@]}" test -e "$DROPIN"; then
  say "$DROPIN exists already: left as it is"
else
  "${X[@]}" sh -c "mkdir -p /etc/containers/registries.conf.d && printf '[[registry]]\\nlocation = \"%s\"\\ninsecure = true\\n' '$REG_ADDR' >'$DROPIN'"
  dropin_written=1
fi
run cat "$DROPIN"
run hoist pull "$ETCD_IMAGE"
run hoist images

bold "2. What the image expects: its /exports contract"
run hoist images info "$ETCD_IMAGE"

bold "3. Install it: a unit, a tmpfiles.d snippet, host files, an enabled service"
run hoist install --name etcd "$ETCD_IMAGE"
run systemctl is-enabled etcd
run systemctl cat etcd

bold "4. Start it like any service"
run systemctl start etcd
run hoist list

bold "5. Use it: etcdctl is a host file the image installed as /usr/local/bin/etcdctl (\${NAME}ctl)"
for _ in $(seq 100); do "${X[@]}" etcdctl endpoint health >/dev/null 2>&1 && break; sleep 0.1; done
run etcdctl put /demo/greeting "hello from a system container"
run etcdctl get /demo/greeting

bold "6. Its logs are the unit's journal"
run journalctl -u etcd --no-pager -n 5 -o cat

bold "7. Status, and a command inside the running container"
run hoist status etcd
run hoist run etcd etcdctl get --print-value-only /demo/greeting

bold "8. Update: the registry is asked again (nothing new, nothing done); a new value makes a fresh deployment, restarted, judged healthy"
run hoist update etcd
run hoist update --set ETCD_SNAPSHOT_COUNT=5000 etcd
run hoist list
for _ in $(seq 100); do "${X[@]}" etcdctl endpoint health >/dev/null 2>&1 && break; sleep 0.1; done
run etcdctl get --print-value-only /demo/greeting

bold "9. Roll back: a pointer switch and a restart, no pull (run it again to roll forward)"
run hoist rollback etcd
run hoist list
for _ in $(seq 100); do "${X[@]}" etcdctl endpoint health >/dev/null 2>&1 && break; sleep 0.1; done
run etcdctl get --print-value-only /demo/greeting

bold "10. Stop it: inactive (not failed); the data stays"
run systemctl stop etcd
run hoist list -a
run ls /var/lib/etcd/etcd.etcd

bold "11. Uninstall: unit, snippet, host files and both deployments go; data stays unless --purge"
run hoist uninstall etcd
run sh -c 'ls /etc/systemd/system/etcd.service /etc/tmpfiles.d/etcd.conf /usr/local/bin/etcdctl /var/lib/hoist/containers/etcd 2>&1 | sed "s/^/  /"; true'
run hoist list -a

bold "12. The registry goes the same way (--purge: its storage too, which the demo created)"
run hoist uninstall --purge "$REG_NAME"
reg_installed=""
run hoist list -a

say ""
say "Done."
