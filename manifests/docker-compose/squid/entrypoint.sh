#!/bin/sh
# Renders SQUID_ALLOW_DESTINATIONS (IPs, CIDRs or host names, separated by spaces or commas)
# into the rule squid.conf includes before it refuses private destinations, then runs squid in
# the foreground. Empty: only public destinations are reachable.
set -eu
dir=/tmp/squid
mkdir -p "$dir"
rules="$dir/allow.conf"
: >"$rules"
addresses=""
names=""
for d in $(printf '%s' "${SQUID_ALLOW_DESTINATIONS:-}" | tr ',' ' '); do
  if printf '%s' "$d" | grep -Eq '^[0-9.]+(/[0-9]+)?$|:'; then
    addresses="$addresses $d"
  else
    names="$names $d"
  fi
done
if [ -n "$addresses" ]; then
  echo "acl allowed_addresses dst$addresses" >>"$rules"
  echo "http_access allow allowed_addresses" >>"$rules"
fi
if [ -n "$names" ]; then
  echo "acl allowed_names dstdomain -n$names" >>"$rules"
  echo "http_access allow allowed_names" >>"$rules"
fi
if [ -s "$rules" ]; then
  echo "squid-entrypoint: allowed besides public destinations:$addresses$names" >&2
fi
exec squid -N -f /etc/squid/squid.conf "$@"
