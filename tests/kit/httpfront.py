"""What the kit's HTTP fronts for Debian's docker-registry share: a handler base that forwards
GET/HEAD requests to the upstream and answers with a body, and a server on a free port of
127.0.0.1 whose number is printed on stdout once it listens."""

import http.server
import urllib.error
import urllib.request

# Request headers passed on to the upstream; response headers recomputed by the front.
FORWARDED = ("accept", "authorization", "range")
HOP = ("content-length", "transfer-encoding", "connection")


class Front(http.server.BaseHTTPRequestHandler):
    """Subclasses set UPSTREAM (host:port) and may override `logged`."""

    UPSTREAM = ""

    def log_message(self, *args):
        pass

    def logged(self, status):
        """Called after each answer."""

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.logged(status)

    def upstream(self, path, headers=None):
        """(status, body, headers) of the same method on the upstream; the client's forwardable
        headers unless `headers` is given."""
        if headers is None:
            headers = {k: v for k, v in self.headers.items() if k.lower() in FORWARDED}
        req = urllib.request.Request(f"http://{self.UPSTREAM}{path}", method=self.command, headers=headers)
        try:
            with urllib.request.urlopen(req) as r:
                return r.status, r.read(), list(r.headers.items())
        except urllib.error.HTTPError as e:
            return e.code, e.read(), list(e.headers.items())

    def forward(self):
        self.reply(*self.upstream(self.path))


def serve(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()
