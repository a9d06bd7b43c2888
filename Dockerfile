# iterctl container image: `iterctl` is the entrypoint, the arguments are the command.
#
#   docker build -t iterctl .
#   docker run --rm -v iterctl-data:/data iterctl run jobs_examples.count:CountJob --job-id demo
#
# Kubernetes manifests that run this image are in deploy/kubernetes/.

# One base for both stages, so the venv built in the first runs on the same Python in the
# second. The official slim image: Debian with CPython and nothing else (no compilers, docs).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------
# Build stage: resolve and install the dependencies into a virtual environment. pip, its
# caches and the source tree stay here; only the finished venv reaches the final image.
FROM ${PYTHON_IMAGE} AS build

# A venv at a fixed path can be copied whole to the final stage, scripts included.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Only what the install needs: changes to tests or docs do not invalidate this layer.
# README.md is read by setuptools as the package's long description.
COPY pyproject.toml README.md ./
COPY iterctl/ iterctl/
# The extras: the drivers for both server stores, so one image serves every --store URL,
# and prometheus-client for --metrics-port (imported only when the flag is given).
# psycopg[binary], PyMySQL and prometheus-client ship wheels: no compiler is needed.
# `./[...]` is pip's `.[...]` (this directory with extras), spelled as a path so hadolint
# sees a local project rather than an unpinned package from the index.
RUN pip install --no-cache-dir './[postgres,mysql,metrics]'

# ---------------------------------------------------------------------------------------
# Final stage: the runtime only.
FROM ${PYTHON_IMAGE}

# PYTHONUNBUFFERED=1: log lines reach `kubectl logs` as they are written, not when a
#   buffer fills, and the last ones are not lost when the pod is killed.
# PYTHONDONTWRITEBYTECODE=1: the code is read-only to the job's user; do not try to
#   write .pyc files beside it (and so the root filesystem can be mounted read-only).
# ITERCTL_STORE: the default store (iterctl.db in the working directory) would sit in
#   the read-only /app; point it at /data, where a volume can be mounted. Kubernetes
#   manifests set ITERCTL_STORE from a Secret, which overrides this.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ITERCTL_STORE=sqlite:////data/iterctl.db

COPY --from=build /opt/venv /opt/venv

# A numeric, unprivileged user. Numeric so Kubernetes' runAsNonRoot can verify it is not
# root without reading /etc/passwd; the passwd entry only gives it a name in `ps`.
# --no-log-init keeps a large UID from filling /var/log/faillog with sparse bytes.
# /data belongs to it: a writable place for a SQLite or JSON store and its .holds folder.
RUN groupadd --gid 10001 iterctl \
    && useradd --uid 10001 --gid 10001 --no-log-init --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin iterctl \
    && mkdir /data \
    && chown 10001:10001 /data

# Jobs are named MODULE:CLASS and iterctl imports MODULE with the current directory on
# sys.path (as `python -m` does), so the working directory is where job modules live.
# Users add their own with `COPY myjobs/ /app/myjobs/` in an image built FROM this one.
WORKDIR /app
# The example jobs, owned by root and read-only to the job's user.
COPY jobs_examples/ /app/jobs_examples/

USER 10001:10001

# Kubernetes and `docker stop` send this signal first; iterctl finishes the item in
# progress, saves the cursor and exits 75 (resumable). SIGTERM is Docker's default too:
# stated so that no base image or override can change it silently.
STOPSIGNAL SIGTERM

# Exec form, no shell: iterctl itself is PID 1 and receives SIGTERM. A shell as PID 1
# would not forward it, and the kernel gives PID 1 no default signal actions, so a
# process without handlers would ignore SIGTERM until SIGKILL. iterctl installs its own.
ENTRYPOINT ["iterctl"]
CMD ["--help"]
