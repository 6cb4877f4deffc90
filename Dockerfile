# The etcdlab image: the CLI with the emulator and the fault proxy.
# etcd itself runs from the official image in compose.yaml.
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml README.md ./
COPY protos protos
COPY proxy proxy
COPY emulator emulator
COPY bench bench
RUN pip install --no-cache-dir . && useradd --create-home etcdlab
USER etcdlab
ENTRYPOINT ["etcdlab"]
CMD ["--help"]
