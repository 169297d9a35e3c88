# syntax=docker/dockerfile:1
# snapd production image: only the locked runtime dependencies (no moto, no test tools),
# non-root (65532), and nothing written at run time, so it runs with readOnlyRootFilesystem.
# Build: `make image` (docker build -t snapd:latest .).

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: a virtualenv with snapd and its pinned dependencies -------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN python -m venv /opt/snapd

WORKDIR /src
# The pinned dependencies first, against a stub package, so editing the code does not
# re-download them. `.` without extras installs only [project.dependencies]: the `testing`
# and `dev` extras (moto, pytest, …) never enter the image.
COPY pyproject.toml constraints.txt README.md ./
RUN mkdir snapd && touch snapd/__init__.py \
    && /opt/snapd/bin/pip install -c constraints.txt . \
    && rm -r snapd
# Then the code; check the dependency set, fail the build if the simulated world (moto)
# slipped in, and compile every .pyc now so the read-only image never writes one.
COPY snapd ./snapd
RUN /opt/snapd/bin/pip install --no-deps --force-reinstall -c constraints.txt . \
    && /opt/snapd/bin/pip check \
    && if /opt/snapd/bin/python -c "import moto" 2>/dev/null; then \
         echo "moto must not be in the production image" >&2; exit 1; \
       fi \
    && /opt/snapd/bin/python -m compileall -q /opt/snapd/lib

# ---- runtime -----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="snapd" \
      org.opencontainers.image.description="Cross-region copies of Velero's EBS snapshots, and restores from them" \
      org.opencontainers.image.licenses="Apache-2.0"

# A named user for 65532 (the Deployment runs as it too), with a home that exists but is
# never written: the root filesystem is read-only; /tmp is an emptyDir.
RUN groupadd --system --gid 65532 snapd \
    && useradd --system --uid 65532 --gid 65532 --home-dir /home/snapd --create-home \
       --shell /usr/sbin/nologin snapd

COPY --from=build /opt/snapd /opt/snapd

ENV PATH=/opt/snapd/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/snapd

USER 65532:65532
WORKDIR /home/snapd
EXPOSE 8080

# snapd handles SIGTERM itself (drain, exit 0), so it can run as PID 1 without an init.
ENTRYPOINT ["snapd"]
CMD ["run"]
