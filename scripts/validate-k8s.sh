#!/usr/bin/env bash
# Validates the Kubernetes manifests in deploy/k8s against the Kubernetes
# JSON schemas (strict: unknown fields are errors) and against each other and
# Coop's code (scripts/validate_k8s.py says what is checked), then proves the
# validator can fail: the broken manifests in deploy/k8s/testdata/ and broken
# copies of the real ones must all be refused.
#
# Needs python3 with the venv module and pip, and PyPI the first time: the
# pinned kubernetes-validate (scripts/validate-k8s.requirements.txt) goes
# into a virtualenv under ${XDG_CACHE_HOME:-~/.cache}/coop/, reused while
# the pins are unchanged. The schemas ship inside that package, so checking
# itself is offline.
#
#   scripts/validate-k8s.sh
#   K8S_VERSIONS="1.35.0" scripts/validate-k8s.sh    # other versions
set -euo pipefail
cd "$(dirname "$0")/.."

# The oldest and newest Kubernetes versions whose schemas the pinned package
# bundles: the manifests must be valid on both (and so on those between).
K8S_VERSIONS=${K8S_VERSIONS:-"1.33.0 1.37.0"}
requirements=scripts/validate-k8s.requirements.txt

die() {
  echo "validate-k8s: $*" >&2
  exit 1
}

command -v python3 >/dev/null 2>&1 ||
  die "python3 is not installed; it is needed to validate the Kubernetes manifests (Debian: apt-get install python3 python3-venv)"
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 ||
  die "python3 cannot create virtualenvs with pip (no venv/ensurepip module); install it (Debian: apt-get install python3-venv)"

pins=$(sha256sum "$requirements" | cut -c1-12)
python=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
cache=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/coop
venv=$cache/validate-k8s-py$python-$pins

if [[ ! -x $venv/bin/python ]]; then
  echo "validate-k8s: installing the pinned validator into $venv"
  mkdir -p "$cache"
  rm -rf "$venv.partial"
  python3 -m venv "$venv.partial" ||
    die "python3 -m venv failed; install python3-venv (Debian: apt-get install python3-venv)"
  "$venv.partial/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-input -r "$requirements" ||
    die "pip could not install $requirements (is PyPI reachable? pip's message is above)"
  # Only a complete install takes the final name, so an interrupted one is
  # redone next time rather than half-used.
  mv "$venv.partial" "$venv"
fi

args=()
for version in $K8S_VERSIONS; do args+=(--kubernetes-version "$version"); done

"$venv/bin/python" scripts/validate_k8s.py "${args[@]}" deploy/k8s

echo "validate-k8s: self-test (every broken manifest must be refused)"
"$venv/bin/python" scripts/validate_k8s.py --self-test "${args[@]}" deploy/k8s ||
  die "the validator accepted a manifest that is broken on purpose, so its passes prove nothing"
echo "validate-k8s: ok"
