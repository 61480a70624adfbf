#!/bin/sh
# hello: a tiny system-container service. Answers "Hi $RECEIVER (vN)" to every TCP connection
# on $PORT and logs each one to stdout (the unit's journal).
v=$(cat /etc/hello-version)
echo "hello v$v: serving 'Hi ${RECEIVER}' on port ${PORT}"
trap 'echo "hello v$v: stopping"; exit 0' TERM INT
while :; do
  printf 'Hi %s (v%s)\n' "$RECEIVER" "$v" | nc -l -p "$PORT" >/dev/null &
  wait $! && echo "hello v$v: answered a connection"
done
