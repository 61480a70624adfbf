#!/usr/bin/env python3
"""A registry mirror that lies: a read-only front for Debian's docker-registry that answers every
request for a manifest *by digest* with the manifest of another tag, under the digest asked for
(in the Docker-Content-Digest header too), the way a compromised or converting mirror would.

Usage: lying_mirror.py UPSTREAM_ADDR TAG

Listens on 127.0.0.1 (a free port, printed on stdout once listening); forwards every other GET/HEAD
to the upstream unchanged. A client that checks what it receives against the digest it asked for
refuses the answer; one that trusts the header stores the wrong image.
"""

import re
import sys

from httpfront import Front, serve

UPSTREAM, TAG = sys.argv[1], sys.argv[2]
BY_DIGEST = re.compile(r"^/v2/(.+)/manifests/(sha256:[0-9a-f]{64})$")


class Handler(Front):
    UPSTREAM = UPSTREAM

    def do_GET(self):
        m = BY_DIGEST.match(self.path)
        if not m:
            return self.forward()
        name, digest = m.groups()
        status, body, headers = self.upstream(f"/v2/{name}/manifests/{TAG}")
        self.reply(status, body, [(k, digest if k.lower() == "docker-content-digest" else v) for k, v in headers])

    do_HEAD = do_GET


if __name__ == "__main__":
    serve(Handler)
