#!/usr/bin/env bash
# Start PostgreSQL and NATS (JetStream) on loopback if they are not answering; used by `make test`.
set -u
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 5432; then
  echo "PostgreSQL is down; starting it" >&2
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
fi
if ! port_open 4222; then
  echo "NATS is down; starting it" >&2
  if [ -x /usr/sbin/nats-server ]; then
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
      -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log || true
  fi
fi
for _ in $(seq 1 30); do
  if port_open 5432 && port_open 4222; then exit 0; fi
  sleep 1
done
port_open 5432 || echo "WARNING: PostgreSQL is not reachable on 127.0.0.1:5432" >&2
port_open 4222 || echo "WARNING: NATS is not reachable on 127.0.0.1:4222" >&2
exit 0
