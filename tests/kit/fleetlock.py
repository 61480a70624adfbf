"""A FleetLock server for the tests, written from Zincati's protocol document
(coreos/zincati docs/development/fleetlock/protocol.md), standard library only.

    python3 fleetlock.py LOG [SLOTS]

Listens on 127.0.0.1 (a free port, printed on the first line of stdout) and serves:
- POST /v1/pre-reboot and POST /v1/steady-state, each requiring the header
  `fleet-lock-protocol: true` and the body {"client_params": {"id": ID, "group": GROUP}} with
  GROUP matching ^[a-zA-Z0-9.-]+$. Per group a semaphore of SLOTS (default 1) slots, tracked by
  owner: pre-reboot by a holder succeeds again (recursive), by another id while the semaphore is
  full fails with kind "failed_lock_semaphore_full"; steady-state by a holder releases, by a
  non-holder succeeds (nothing to release). Errors: HTTP 4xx with {"kind", "value"}.
- GET /holders: {"GROUP": [ids]} (for the tests' assertions; not part of the protocol).

LOG gets one JSON line per request: {"t", "path", "id", "group", "status", "kind", "holders"}
where holders is the group's holder list after the request.
"""

import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GROUP = re.compile(r"^[a-zA-Z0-9.-]+$")
LOCK = threading.Lock()
HOLDERS = {}
SLOTS = int(sys.argv[2]) if len(sys.argv) > 2 else 1
LOG = open(sys.argv[1], "a", buffering=1)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path != "/holders":
            return self.answer(404, {"kind": "not_found", "value": self.path})
        with LOCK:
            self.answer(200, {g: list(h) for g, h in HOLDERS.items()})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        step = {"/v1/pre-reboot": "pre-reboot", "/v1/steady-state": "steady-state"}.get(self.path)
        ident = group = None
        status, kind = 200, None
        if step is None:
            status, kind, value = 404, "not_found", self.path
        elif self.headers.get("fleet-lock-protocol") != "true":
            status, kind, value = 400, "missing_header", "fleet-lock-protocol: true is required"
        else:
            try:
                params = json.loads(raw)["client_params"]
                ident, group = params["id"], params["group"]
                if not isinstance(ident, str) or not ident or not isinstance(group, str):
                    raise ValueError("id and group must be strings")
                if not GROUP.match(group):
                    raise ValueError("bad group %r" % group)
            except (ValueError, KeyError, TypeError) as e:
                status, kind, value = 400, "invalid_client_params", str(e)
        with LOCK:
            if status == 200:
                holders = HOLDERS.setdefault(group, [])
                if step == "pre-reboot":
                    if ident not in holders:
                        if len(holders) >= SLOTS:
                            status, kind = 409, "failed_lock_semaphore_full"
                            value = "semaphore currently full (%d of %d slots held)" % (len(holders), SLOTS)
                        else:
                            holders.append(ident)
                elif ident in holders:
                    holders.remove(ident)
            after = list(HOLDERS.get(group, [])) if group else []
            LOG.write(json.dumps({"t": time.time(), "path": self.path, "id": ident, "group": group,
                                  "status": status, "kind": kind, "holders": after}) + "\n")
        if status == 200:
            return self.answer(200, {})
        self.answer(status, {"kind": kind, "value": value})


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
