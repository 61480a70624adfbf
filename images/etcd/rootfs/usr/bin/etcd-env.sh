#!/bin/sh
# Entry point of the etcd system container (after atomic's etcd-env.sh): derive the member name
# and data dir, drop ETCD_* variables left empty by the install, read the host's
# $CONF_DIRECTORY/$NAME/etcd.conf (mounted at /etc/etcd) last so it wins, then exec etcd.
: "${NAME:=etcd}"
export ETCD_NAME="${ETCD_NAME:-$NAME}"
export ETCD_DATA_DIR="/var/lib/etcd/${NAME}.etcd"
for v in $(env | sed -n 's/^\(ETCD_[A-Z0-9_]*\)=$/\1/p'); do
  unset "$v"
done
if [ -z "${ETCD_INITIAL_CLUSTER:-}" ] && [ -n "${ETCD_INITIAL_ADVERTISE_PEER_URLS:-}" ]; then
  export ETCD_INITIAL_CLUSTER="${ETCD_NAME}=${ETCD_INITIAL_ADVERTISE_PEER_URLS}"
fi
if [ -f /etc/etcd/etcd.conf ]; then
  set -a
  . /etc/etcd/etcd.conf
  set +a
fi
exec "$@"
