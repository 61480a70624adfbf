#!/usr/bin/env python3
"""A registry mirror that lies: a read-only front for Debian's docker-registry that answers every
request for a manifest *by digest* with the manifest of another tag, under the digest asked for
(in the Docker-Content-Digest header too), the way a compromised or converting mirror would.

Usage: lying_mirror.py UPSTREAM_ADDR TAG

Listens on 127.0.0.1 (a free port, printed on stdout once listening); forwards every other GET/HEAD
to the upstream unchanged. A client that checks what it receives against the digest it asked for
refuses the answer; one that trusts the header stores the wrong image.
"""

import http.server
import re
import sys
import urllib.error
import urllib.request

UPSTREAM, TAG = sys.argv[1], sys.argv[2]
BY_DIGEST = re.compile(r"^/v2/(.+)/manifests/(sha256:[0-9a-f]{64})$")


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def upstream(self, path):
        fwd = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "authorization", "range")}
        req = urllib.request.Request(f"http://{UPSTREAM}{path}", method="GET", headers=fwd)
        try:
            with urllib.request.urlopen(req) as r:
                return r.status, r.read(), list(r.headers.items())
        except urllib.error.HTTPError as e:
            return e.code, e.read(), list(e.headers.items())

    def do_GET(self):
        m = BY_DIGEST.match(self.path)
        if m:
            name, digest = m.groups()
            status, body, headers = self.upstream(f"/v2/{name}/manifests/{TAG}")
            headers = [(k, digest if k.lower() == "docker-content-digest" else v) for k, v in headers]
        else:
            status, body, headers = self.upstream(self.path)
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
