# A static SIGANTENG binary on a distroless base, run as a non-root user.
# The image has no espeak-ng: text_to_speech needs OPENAI_API_KEY or HF_TOKEN.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/siganteng ./cmd/siganteng \
 && mkdir -p /out/artifacts

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/siganteng /usr/local/bin/siganteng
# Owned by the user the process runs as; a new volume mounted here starts so.
COPY --from=build --chown=nonroot:nonroot /out/artifacts /var/lib/siganteng/artifacts
ENV HTTP_ADDR=0.0.0.0:8000 \
    LOG_FORMAT=json \
    ARTIFACT_DIR=/var/lib/siganteng/artifacts
EXPOSE 8000
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/siganteng"]
CMD ["serve"]
