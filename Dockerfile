# postee's container image. It is built from nothing (no base image, so no registry is
# needed): `scripts/image` prepares the build context (the binary, the shared libraries it
# links, CA certificates, /etc/passwd with user postee) and runs `docker build` on it.
#
#   cargo build --release && scripts/image --tag postee:dev
#
# `docker build .` at the repository root does not work: the context must come from
# scripts/image (see docs/operations.md, "Container image").
FROM scratch

ARG VERSION=dev
LABEL org.opencontainers.image.title="postee" \
      org.opencontainers.image.description="Security alert router compatible with Postee" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

# The binary (/server/postee; the Rego templates and filters are compiled in), its shared
# libraries, CA certificates, passwd/group, the default config (/config/cfg.yaml) and /tmp.
# Everything here belongs to root and is read-only for postee.
COPY rootfs/ /
# The data directory (store, api-key, generated TLS certificate), owned by postee.
COPY --chown=1099:1099 data/ /server/database/

# Postee's layout: /server (working directory: ./rego-templates and ./rego-filters hold
# custom templates and filters), /server/database, /config/cfg.yaml.
# POSTEE_CFG wins over --cfgfile (as in Postee): to use another file, set POSTEE_CFG.
ENV POSTEE_CFG=/config/cfg.yaml \
    POSTEE_DATA_DIR=/server/database
WORKDIR /server
VOLUME ["/server/database"]

# User and group postee (uid/gid 1099, as Postee's image); numeric, so that Kubernetes'
# runAsNonRoot can check it.
USER 1099:1099

# HTTP and HTTPS (POSTEE_HTTP / POSTEE_HTTPS change them; `off` disables HTTPS).
EXPOSE 8082 8445

# The image has no shell, curl or wget: the binary probes its own /healthz, on the address
# that POSTEE_HTTP (or AQUAALERT_URL) sets, with loopback for a wildcard host.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/server/postee", "healthcheck"]

ENTRYPOINT ["/server/postee"]
