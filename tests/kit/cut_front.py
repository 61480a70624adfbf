#!/usr/bin/env python3
"""A registry front whose connections break: the first GET of every blob is answered with the
whole Content-Length but only half of the body, then the connection is closed, as a flaky
network or a restarting proxy would. Later GETs of the same blob are forwarded whole.

Usage: cut_front.py UPSTREAM_ADDR

Listens on 127.0.0.1 (a free port, printed on stdout once listening); forwards every other GET/HEAD
to the upstream unchanged. A client must retry the blob and never keep the half it received.
"""

import re
import socket
import sys
import threading

from httpfront import HOP, Front, serve

UPSTREAM = sys.argv[1]
BLOB = re.compile(r"^/v2/.+/blobs/(sha256:[0-9a-f]{64})$")
CUT = set()
LOCK = threading.Lock()


class Handler(Front):
    UPSTREAM = UPSTREAM

    def do_GET(self):
        m = BLOB.match(self.path)
        if not m:
            return self.forward()
        with LOCK:
            first = m.group(1) not in CUT
            CUT.add(m.group(1))
        status, body, headers = self.upstream(self.path)
        if not first or status != 200 or len(body) < 2:
            return self.reply(status, body, headers)
        self.send_response(200)
        for k, v in headers:
            if k.lower() not in HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def do_HEAD(self):
        self.forward()


if __name__ == "__main__":
    serve(Handler)
