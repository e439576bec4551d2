# Sourced by hack/grpc-clients.sh and hack/cri-fuzz.sh: the pinned grpcio in a virtualenv made on
# first use (pip only downloads when a pinned version is missing; a venv whose interpreter is
# gone is made again), and `python_cri_stubs <dir>`, which writes api_pb2.py and
# api_pb2_grpc.py for proto/cri/api.proto there. Sets venv.
GRPCIO_VERSION=1.85.1
PROTOBUF_VERSION=7.36.2
venv=${FERROCRI_PY_VENV:-/var/cache/ferrocri-test-venv}
"$venv/bin/python" -c '' 2>/dev/null || { rm -rf "$venv" && python3 -m venv "$venv"; }
"$venv/bin/pip" install --quiet --disable-pip-version-check \
	"grpcio==$GRPCIO_VERSION" "grpcio-tools==$GRPCIO_VERSION" "protobuf==$PROTOBUF_VERSION"

python_cri_stubs() {
	mkdir -p "$1"
	"$venv/bin/python" -m grpc_tools.protoc -I"$PWD/proto/cri" --python_out="$1" \
		--grpc_python_out="$1" "$PWD/proto/cri/api.proto"
}
