# spacerelay in a container: a Hugging Face Docker Space (see
# deploy/huggingface/ for a Space built from a release, without this
# repository) or any other container host. From the repository's root:
#
#   docker build -t spacerelay .
#   docker run -p 7860:7860 -e SPACERELAY_UPSTREAM=owner/zerogpu-space spacerelay
#
# It is configured by its environment only: the SPACERELAY_* variables of
# "spacerelay --help" and, for a private upstream Space, the HF_TOKEN secret.
# It runs as uid 1000 (as Spaces do) and writes nothing. The tests read this
# file (cmd/spacerelay/e2e_image_test.go): they build the binary with its
# commands and run it as its last stage says, as uid 1000 from a read-only
# directory, behind a proxy that stamps visitor tokens as Hugging Face's does.

FROM golang:1.26.4 AS build
WORKDIR /src
# The dependencies first, so that a change of code reuses their layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# A static binary (no cgo), stripped, with trimmed paths; a Space's build
# has no .git. "task build" runs this same command.
ENV CGO_ENABLED=0
RUN go build -trimpath -buildvcs=false -ldflags="-s -w" -o bin/spacerelay ./cmd/spacerelay

FROM gcr.io/distroless/static-debian13
COPY --from=build /src/bin/spacerelay /spacerelay
ENV SPACERELAY_LISTEN=:7860
USER 1000:1000
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["/spacerelay", "--healthcheck"]
ENTRYPOINT ["/spacerelay"]
