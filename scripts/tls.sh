#!/usr/bin/env bash
# Test certificates for the secured runs (scripts/test.sh): a CA, a server certificate for
# `localhost` and 127.0.0.1, a client certificate (mutual TLS), and an unrelated CA that
# vouches for nothing here (the "unknown CA" case). Made fresh with openssl each time; keys are
# unencrypted PKCS#8 PEM. Nothing here is for production.
#
#   scripts/tls.sh DIR      # writes DIR/{ca,server,client,other-ca}.{pem,key}
#                           # and DIR/server-keystore.pem (key + chain, for Kafka's PEM keystore)
set -euo pipefail

dir="${1:?usage: scripts/tls.sh DIR}"
command -v openssl >/dev/null || {
  echo "[tls] openssl not found; installing" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
}
mkdir -p "$dir"
cd "$dir"
rm -f ./*.pem ./*.key ./*.csr ./*.srl ./*.ext

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ca() { # name, common name
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -sha256 -days 30 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$1.pem" 2>/dev/null
}

leaf() { # name, common name, extended key usage, subjectAltName or ""
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$3"
    [[ -z "$4" ]] || echo "subjectAltName=$4"
  } >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 -days 30 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

ca ca "tickcast test CA"
ca other-ca "some other CA"
leaf server localhost serverAuth "DNS:localhost,IP:127.0.0.1"
# The client's name is the Postgres role it logs in as (clientcert=verify-full).
leaf client tickcast_tls clientAuth ""
cat server.key server.pem >server-keystore.pem
rm -f ./*.srl
chmod 644 ./*.pem ./*.key
echo "[tls] certificates in $dir" >&2
