# Recipe for scripts/make-real-root.sh: the root a real vLLM runs in.
# Debian 12's python3 (the interpreter the vLLM virtual environment is built
# with, by scripts/make-vllm-venv.sh, so it links to this root's libraries),
# libnuma (vLLM's CPU kernels load it), curl for the test's clients. The 6 GB environment itself stays outside the
# root (/var/tmp/mode-controller-vllm) and is bound in at /opt/vllm.
packages=(python3 python3-venv libnuma1 ca-certificates curl perl)
