# Sourced by the build stages' RUN steps (docker/Dockerfile, docker/builder/Dockerfile).
# When docker/build-env/ holds a CA bundle or a pip.conf (a build behind a TLS-intercepting
# proxy), pip and Python's ssl use them; when it holds neither, the base image's trust store and
# pip's defaults apply. Nothing here is written into a final image.
if [ -s /tmp/build-env/ca-certificates.crt ]; then
  export PIP_CERT=/tmp/build-env/ca-certificates.crt
  export SSL_CERT_FILE=/tmp/build-env/ca-certificates.crt
  export REQUESTS_CA_BUNDLE=/tmp/build-env/ca-certificates.crt
fi
if [ -s /tmp/build-env/pip.conf ]; then
  export PIP_CONFIG_FILE=/tmp/build-env/pip.conf
fi
