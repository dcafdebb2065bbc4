#!/bin/sh
# Renders SQUID_ALLOW_DESTINATIONS (IPv4 addresses, CIDRs or host names, separated by spaces or
# commas) into the rule squid.conf includes before it refuses private destinations, then runs
# squid in the foreground. Empty: only public destinations are reachable.
set -eu
dir=/tmp/squid
mkdir -p "$dir"
rules="$dir/allow.conf"
: >"$rules"
addresses=""
names=""
for d in $(printf '%s' "${SQUID_ALLOW_DESTINATIONS:-}" | tr ',' ' '); do
  if printf '%s' "$d" | grep -q ':'; then
    echo "squid-entrypoint: SQUID_ALLOW_DESTINATIONS: $d: IPv6 addresses cannot be allowed (URLs naming one are refused); name the host instead" >&2
    exit 2
  elif printf '%s' "$d" | grep -Eq '^[0-9.]+(/[0-9]+)?$'; then
    addresses="$addresses $d"
  else
    names="$names $d"
  fi
done
# An address is allowed only where the URL names it: squid's dst matches a name when any of its
# addresses does, so a name resolving to an allowed address and to a forbidden one would pass.
if [ -n "$addresses" ]; then
  echo "acl allowed_addresses dst$addresses" >>"$rules"
  echo "http_access allow allowed_addresses ipv4_literal" >>"$rules"
fi
if [ -n "$names" ]; then
  echo "acl allowed_names dstdomain -n$names" >>"$rules"
  echo "http_access allow allowed_names" >>"$rules"
fi
if [ -s "$rules" ]; then
  echo "squid-entrypoint: allowed besides public destinations:$addresses$names" >&2
fi
exec squid -N -f /etc/squid/squid.conf "$@"
