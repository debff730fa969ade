# Recipe for scripts/make-real-root.sh: the test root with Debian's full perl
# (JSON::PP), for the HTTP stand-in of the Kubernetes API server
# (tests/fixtures/bin/kube-api-standin.pl): no API server can run here.
packages=(perl)
