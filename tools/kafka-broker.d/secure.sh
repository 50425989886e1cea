# Sourced by tools/kafka-broker for `--profile secure`: makes the profile's certificates, keys and
# JWKS with openssl (once; kept in the profile's state dir, mode 700, files 600).
#
#   ca.pem ca.key                 the test CA (trusted by the broker and the tests)
#   other-ca.pem other-ca.key     a CA nobody trusts (the wrong-CA tests)
#   server.pem server.key         CN=klua-broker, SAN IP:127.0.0.1 and DNS:localhost
#   server-keystore.pem           server key + certificate (Kafka's PEM keystore)
#   expired-keystore.pem          the same key with a certificate valid 2020-01-01..02 only
#   client.pem client.key         CN=klua-client (mTLS; an ordinary principal)
#   admin.pem admin.key           CN=klua-admin (mTLS; a super user)
#   stranger.pem stranger.key     CN=klua-stranger, issued by other-ca (refused by the broker)
#   client-expired.pem            CN=klua-client, issued by ca, expired (refused by the broker)
#   oauth.key oauth-other.key     RSA keys signing JWTs: the JWKS lists oauth.key's only
#   jwks.json                     {"keys":[{kid "klua-test", RS256}]}

secure_make_material() { # dir
  local dir=$1
  [[ -f "$dir/.complete" ]] && return 0
  command -v openssl >/dev/null 2>&1 || die "openssl not found (the secure profile makes its certificates with it)"
  (
    set -euo pipefail
    umask 077
    mkdir -p "$dir"
    chmod 700 "$dir"
    cd "$dir"
    rm -rf ./*.pem ./*.key ./*.csr ca-db
    ossl() { openssl "$@" 2>>openssl.log; }
    mkca() { # name subject
      ossl req -x509 -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.pem" -days 3650 -subj "$2" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    }
    csr() { # name subject [san]
      ossl req -new -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2"
    }
    ext() { # san
      printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n'
      [[ -z "${1:-}" ]] || printf 'subjectAltName=%s\n' "$1"
    }
    sign() { # name ca [san]
      ext "${3:-}" >"$1.ext"
      ossl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -set_serial "0x$(openssl rand -hex 8)" \
        -days 3650 -sha256 -extfile "$1.ext" -out "$1.pem"
      rm -f "$1.ext"
    }
    mkca ca "/CN=klua test CA"
    mkca other-ca "/CN=klua untrusted CA"
    csr server "/CN=klua-broker" && sign server ca "IP:127.0.0.1,DNS:localhost"
    csr client "/CN=klua-client" && sign client ca
    csr admin "/CN=klua-admin" && sign admin ca
    csr stranger "/CN=klua-stranger" && sign stranger other-ca
    cat server.key server.pem >server-keystore.pem
    # Expired certificates: openssl ca takes explicit start and end dates.
    mkdir -p ca-db/new
    : >ca-db/index.txt
    openssl rand -hex 8 >ca-db/serial
    cat >ca-db/ca.cnf <<CNF
[ ca ]
default_ca = klua
[ klua ]
database = $dir/ca-db/index.txt
new_certs_dir = $dir/ca-db/new
serial = $dir/ca-db/serial
default_md = sha256
policy = any
unique_subject = no
[ any ]
commonName = supplied
CNF
    expired() { # out csr san
      ext "${3:-}" >ca-db/ext
      ossl ca -batch -config ca-db/ca.cnf -cert ca.pem -keyfile ca.key -in "$2" -out "$1" -notext \
        -startdate 20200101000000Z -enddate 20200102000000Z -extfile ca-db/ext
    }
    expired expired-server.pem server.csr "IP:127.0.0.1,DNS:localhost"
    cat server.key expired-server.pem >expired-keystore.pem
    expired client-expired.pem client.csr
    rm -rf ./*.csr ca-db
    # JWT signing keys and the JWKS of the trusted one (n: the modulus, base64url).
    ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out oauth.key
    ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out oauth-other.key
    local n
    n=$(openssl rsa -in oauth.key -noout -modulus | cut -d= -f2 | xxd -r -p | base64 -w0 | tr '+/' '-_' | tr -d '=')
    printf '{"keys":[{"kty":"RSA","use":"sig","alg":"RS256","kid":"klua-test","n":"%s","e":"AQAB"}]}\n' "$n" >jwks.json
    rm -f openssl.log
    chmod 600 ./*
    : >.complete
  ) || die "could not make the secure profile's certificates in $dir (see $dir/openssl.log)"
}
