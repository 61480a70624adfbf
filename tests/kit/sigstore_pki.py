#!/usr/bin/env python3
"""Write a throwaway sigstore into OUTDIR: a Fulcio-style CA (fulcio-root.pem, a P-384 root, and
fulcio-intermediate.pem, a P-256 intermediate, each with its .key; fulcio-ca.pem holds both), a
second unrelated CA (other-root.pem, other-intermediate.pem, other-ca.pem), an ordinary PKI for
`pki` requirements (pki-root.pem, pki-intermediate.pem, pki-ca.pem) and two Rekor log keys (rekor.pub/.key,
rekor-other.pub/.key). See kitlib.py for the formats.

Usage: sigstore_pki.py OUTDIR
"""

import os
import sys

import kitlib


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    kitlib.make_pki(out, "fulcio")
    kitlib.make_pki(out, "other")
    kitlib.make_pki(out, "pki")
    kitlib.make_rekor(out, "rekor")
    kitlib.make_rekor(out, "rekor-other")


if __name__ == "__main__":
    main()
