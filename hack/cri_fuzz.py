"""A CRI fuzzer from outside the project: Python's grpcio sends random, mutated and
plausible-but-nasty protobuf to every RuntimeService and ImageService method for a while,
counts the answers by gRPC code, and fails if any call is answered INTERNAL (ferrocri's own
fault, never the caller's) or Version stops answering.

    python3 hack/cri_fuzz.py <stubs dir> <socket> <seconds> [seed]

<stubs dir> holds api_pb2.py and api_pb2_grpc.py generated from proto/cri/api.proto
(hack/grpc-clients.sh makes them). Pulls only ever name 127.0.0.1:5000. What the run creates is
left for the caller to remove (with crictl, to show crictl can).
"""

import collections
import random
import sys
import threading
import time

import grpc

sys.path.insert(0, sys.argv[1])
import api_pb2 as cri  # noqa: E402

SOCKET, SECONDS = sys.argv[2], float(sys.argv[3])
rng = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else time.time_ns())
CALL_TIMEOUT = 15
# Served by the local registry through hack/certs.d; pulled once so creates get far.
BUSYBOX = "registry.k8s.io/e2e-test-images/busybox:1.29-2"

NASTY_STRINGS = [
    "", "a", "web-0", "default", "\x00", "a\x00b", "\n", "a\nb", "\r\n", " ", "..", "../../etc",
    "/", "/tmp", "relative/path", "/dev/null", "x" * 64, "x" * 65, "x" * 254, "x" * 5000,
    "é", "\u202e", "\ufeff", "%20%22", "${HOME}", "$(reboot)", "-1", "0", "4294967296",
    "net.ipv4.ip_forward", "kernel.shm_rmid_forced", "kernel.panic", "1 2", "yes",
    "sha256:" + "0" * 64, "127.0.0.1:5000/busybox:1.36", "tcp", "NET_ADMIN", "ALL", "runtime/default",
    "10.88.0.0/16", "::1", "a=b", "k8s.io/x", "Bad Key", "a" * 63 + "/b",
]
NASTY_INTS = [0, 1, -1, 2, 3, 7, 65535, 65536, -65536, 1000, 999, 262145, 2**31 - 1, -2**31,
              2**32, 2**63 - 1, -2**63]


def nasty_string():
    if rng.random() < 0.2:
        return "".join(chr(rng.randrange(0, 0x250)) for _ in range(rng.randrange(0, 40)))
    return rng.choice(NASTY_STRINGS)


def fill(message, depth=0):
    """Sets a random selection of `message`'s fields to nasty values."""
    for field in message.DESCRIPTOR.fields:
        if rng.random() < 0.4:
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            target = getattr(message, field.name)
            value_field = field.message_type.fields_by_name["value"]
            for _ in range(rng.randrange(0, 3)):
                key = nasty_string()
                if value_field.message_type is not None:
                    fill(target[key], depth + 1)
                else:
                    target[key] = nasty_string()
            continue
        repeated = field.is_repeated
        for _ in range(rng.randrange(0, 3) if repeated else 1):
            if field.message_type is not None:
                if depth > 4:
                    break
                child = getattr(message, field.name).add() if repeated else getattr(message, field.name)
                fill(child, depth + 1)
                if not repeated:
                    child.SetInParent()
                continue
            value = scalar(field)
            try:
                if repeated:
                    getattr(message, field.name).append(value)
                else:
                    setattr(message, field.name, value)
            except (ValueError, TypeError):
                pass


def scalar(field):
    t = field.type
    if t == field.TYPE_STRING:
        return nasty_string()
    if t == field.TYPE_BYTES:
        return nasty_string().encode("utf-8", "surrogatepass")
    if t == field.TYPE_BOOL:
        return rng.random() < 0.5
    if t == field.TYPE_ENUM:
        return rng.choice([0, 1, 2, 3, 99, -1])
    if t in (field.TYPE_DOUBLE, field.TYPE_FLOAT):
        return rng.choice([0.0, -1.0, 1e300])
    value = rng.choice(NASTY_INTS)
    unsigned = t in (field.TYPE_UINT32, field.TYPE_UINT64, field.TYPE_FIXED32, field.TYPE_FIXED64)
    bits = 32 if t in (field.TYPE_INT32, field.TYPE_UINT32, field.TYPE_SINT32, field.TYPE_FIXED32,
                       field.TYPE_SFIXED32) else 64
    if unsigned:
        return value % (2**bits)
    return ((value + 2**(bits - 1)) % 2**bits) - 2**(bits - 1)


def good_pod(name):
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=name, namespace="fuzz", uid=f"uid-{name}"),
        hostname=name,
        linux=cri.LinuxPodSandboxConfig(),
    )


def template(method, pod_id):
    """A plausible request for `method` (one field will be made nasty), or None."""
    n = f"fz{rng.randrange(10**6)}"
    if method == "RunPodSandbox":
        return cri.RunPodSandboxRequest(config=good_pod(n))
    if method == "CreateContainer":
        return cri.CreateContainerRequest(
            pod_sandbox_id=pod_id,
            config=cri.ContainerConfig(
                metadata=cri.ContainerMetadata(name=n),
                image=cri.ImageSpec(image=BUSYBOX),
                command=["sleep", "1"],
            ),
            sandbox_config=good_pod("fuzz-base"),
        )
    if method == "PullImage":
        return cri.PullImageRequest(image=cri.ImageSpec(image="127.0.0.1:5000/fuzz-none:1"))
    return None


def nasty_one_field(message):
    """Overwrites one leaf string/int of an otherwise good message."""
    leaves = []

    def walk(m):
        for f in m.DESCRIPTOR.fields:
            if f.message_type is not None and not f.is_repeated:
                if m.HasField(f.name):
                    walk(getattr(m, f.name))
                else:
                    leaves.append((m, f))
            else:
                leaves.append((m, f))

    walk(message)
    if not leaves:
        return
    m, f = rng.choice(leaves)
    probe = type(m)()
    fill(probe)
    m.ClearField(f.name)
    if f.is_repeated or (f.message_type is not None and f.message_type.GetOptions().map_entry):
        getattr(m, f.name).MergeFrom(getattr(probe, f.name))
    elif f.message_type is not None:
        getattr(m, f.name).CopyFrom(getattr(probe, f.name))
    elif probe.HasField(f.name) if f.has_presence else True:
        setattr(m, f.name, getattr(probe, f.name))


def mutate(data):
    data = bytearray(data)
    for _ in range(rng.randrange(1, 6)):
        op = rng.randrange(4)
        if op == 0 and data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif op == 1:
            data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
        elif op == 2 and data:
            del data[rng.randrange(len(data)):]
        else:
            data.extend(rng.randbytes(rng.randrange(1, 16)))
    return bytes(data)


def request_bytes(service, method, pod_id):
    request_type = getattr(cri, service.methods_by_name[method].input_type.name)
    kind = rng.choice(["random", "mutated", "nasty", "template"])
    if method == "PullImage":
        kind = "template"  # never a registry other than 127.0.0.1:5000
    if kind == "random":
        return kind, rng.randbytes(rng.randrange(0, 200))
    good = template(method, pod_id) or request_type()
    if kind == "template":
        nasty_one_field(good)
        if method == "PullImage":
            good.image.image = "127.0.0.1:5000/" + good.image.image.lstrip("/")
        return kind, good.SerializeToString()
    if kind == "nasty":
        m = request_type()
        fill(m)
        return kind, m.SerializeToString()
    return kind, mutate(good.SerializeToString())


def main():
    channel = grpc.insecure_channel(f"unix://{SOCKET}", options=[
        ("grpc.max_send_message_length", 32 << 20),
        ("grpc.max_receive_message_length", 32 << 20),
    ])
    services = [cri.DESCRIPTOR.services_by_name[s] for s in ("RuntimeService", "ImageService")]
    methods = [(s, m.name) for s in services for m in s.methods
               if not m.server_streaming or m.name.startswith("Stream") or m.name == "GetContainerEvents"]
    counts = collections.Counter()
    by_method = collections.defaultdict(collections.Counter)
    internal = []
    stop = threading.Event()
    version_failures = []

    def version_watch():
        call = channel.unary_unary("/runtime.v1.RuntimeService/Version")
        while not stop.wait(1.0):
            try:
                call(cri.VersionRequest().SerializeToString(), timeout=5)
            except grpc.RpcError as e:
                version_failures.append(f"{e.code()}: {e.details()}")

    watcher = threading.Thread(target=version_watch, daemon=True)
    watcher.start()

    # One real pod and image, so CreateContainer templates reach past the lookups.
    pod_id = ""
    try:
        pull = channel.unary_unary("/runtime.v1.ImageService/PullImage")
        pull(cri.PullImageRequest(image=cri.ImageSpec(image=BUSYBOX)).SerializeToString(), timeout=120)
        run = channel.unary_unary("/runtime.v1.RuntimeService/RunPodSandbox",
                                  response_deserializer=cri.RunPodSandboxResponse.FromString)
        pod_id = run(cri.RunPodSandboxRequest(config=good_pod("fuzz-base")).SerializeToString(),
                     timeout=60).pod_sandbox_id
    except grpc.RpcError as e:
        print(f"base pod: {e.code()}: {e.details()}")

    end = time.monotonic() + SECONDS
    calls = 0
    while time.monotonic() < end:
        service, method = rng.choice(methods)
        kind, body = request_bytes(service, method, pod_id)
        path = f"/runtime.v1.{service.name}/{method}"
        streaming = service.methods_by_name[method].server_streaming
        try:
            if streaming:
                stream = channel.unary_stream(path)(body, timeout=2 if method == "GetContainerEvents" else CALL_TIMEOUT)
                for _ in stream:
                    pass
            else:
                channel.unary_unary(path)(body, timeout=CALL_TIMEOUT)
            code = "OK"
        except grpc.RpcError as e:
            code = e.code().name
            if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and method == "GetContainerEvents":
                code = "OK"  # a subscription runs until the caller leaves
            if e.code() == grpc.StatusCode.INTERNAL:
                internal.append(f"{method} ({kind}): {e.details()[:300]}")
        calls += 1
        counts[code] += 1
        by_method[method][code] += 1
    stop.set()
    watcher.join()

    print(f"{calls} calls in {SECONDS:.0f} s")
    for code, n in counts.most_common():
        print(f"  {code:20} {n}")
    print("per method (codes other than INVALID_ARGUMENT):")
    for method in sorted(by_method):
        other = {c: n for c, n in by_method[method].items() if c != "INVALID_ARGUMENT"}
        print(f"  {method:28} {sum(by_method[method].values()):5}  {dict(other)}")
    ok = True
    if internal:
        ok = False
        print(f"FAIL  {len(internal)} INTERNAL answers:")
        for line in internal[:20]:
            print(f"  {line}")
    if version_failures:
        ok = False
        print(f"FAIL  Version did not answer {len(version_failures)} times: {version_failures[:3]}")
    print("PASS  no INTERNAL answer, Version answered throughout" if ok else "")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
