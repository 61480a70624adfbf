#!/usr/bin/env python3
"""A read-only front for Debian's docker-registry (distribution 2.8) that answers the OCI 1.1
referrers API, which that registry lacks, so that a client's native-API path can be tested.

Usage: referrers_proxy.py UPSTREAM_ADDR LOGFILE [405]

Listens on 127.0.0.1 (a free port, printed on stdout once listening) and
- answers GET /v2/NAME/referrers/DIGEST with the image index the upstream keeps at the referrers
  tag schema's tag (sha256-HEX), or an empty index, filtered by ?artifactType= when given (and
  then says so in the OCI-Filters-Applied header), as distribution-spec 1.1 says;
- hides that tag: GET/HEAD /v2/NAME/manifests/sha256-HEX answers 404, so a client that finds the
  bundles went through the API;
- forwards every other GET/HEAD to the upstream unchanged.
With `405`, it plays a registry that refuses the API with 405 Method Not Allowed (not the 404
the specification asks for) and serves the tag schema's tag as the upstream has it.
Each request is logged to LOGFILE as "METHOD PATH STATUS".
"""

import json
import re
import sys
import urllib.parse

from httpfront import Front, serve

UPSTREAM, LOG = sys.argv[1], sys.argv[2]
REFUSE = len(sys.argv) > 3 and sys.argv[3] == "405"
INDEX = "application/vnd.oci.image.index.v1+json"
REFERRERS = re.compile(r"^/v2/(.+)/referrers/(sha256:[0-9a-f]{64})$")
TAG_SCHEMA = re.compile(r"^/v2/(.+)/manifests/sha256-[0-9a-f]{64}$")


class Handler(Front):
    UPSTREAM = UPSTREAM

    def logged(self, status):
        with open(LOG, "a") as f:
            f.write(f"{self.command} {self.path} {status}\n")

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        m = REFERRERS.match(url.path)
        if m and REFUSE:
            return self.reply(405, b'{"errors":[{"code":"UNSUPPORTED"}]}', [("Content-Type", "application/json")])
        if m:
            name, digest = m.groups()
            tag = digest.replace(":", "-")
            status, body, _ = self.upstream(f"/v2/{name}/manifests/{tag}", {"Accept": INDEX})
            index = json.loads(body) if status == 200 else {"schemaVersion": 2, "mediaType": INDEX, "manifests": []}
            headers = [("Content-Type", INDEX)]
            wanted = urllib.parse.parse_qs(url.query).get("artifactType")
            if wanted:
                index["manifests"] = [d for d in index["manifests"] if d.get("artifactType") in wanted]
                headers.append(("OCI-Filters-Applied", "artifactType"))
            return self.reply(200, json.dumps(index).encode(), headers)
        if TAG_SCHEMA.match(url.path) and not REFUSE:
            return self.reply(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', [("Content-Type", "application/json")])
        self.forward()

    do_HEAD = do_GET


if __name__ == "__main__":
    serve(Handler)
