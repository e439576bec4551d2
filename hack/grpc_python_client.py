"""The CRI from Python's grpcio (gRPC C-core, shared with Ruby, PHP and C++ clients), with the
channel's DEFAULT options: C-core derives the :authority from the unix: target itself.

    python3 hack/grpc_python_client.py <stubs dir> <socket> <work dir>

<stubs dir> holds api_pb2.py and api_pb2_grpc.py generated from proto/cri/api.proto;
hack/grpc-clients.sh makes them, starts a private daemon and runs this. Prints one line per
check and exits 1 if any failed.
"""

import os
import sys
import time

import grpc

sys.path.insert(0, sys.argv[1])
import api_pb2 as cri  # noqa: E402
import api_pb2_grpc as cri_grpc  # noqa: E402

SOCKET, WORK = sys.argv[2], sys.argv[3]
BUSYBOX = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
# Pulled and removed again; no other check uses it.
SCRATCH_IMAGE = "gcr.io/k8s-staging-cri-tools/test-image-1:latest"
TIMEOUT = 60

failures = []


def check(name, ok, detail=""):
    print(f"{'PASS' if ok else 'FAIL'}  {name}{'' if ok else ': ' + str(detail)}")
    if not ok:
        failures.append(name)


def expect_error(name, code, call, field=None):
    """`call` must fail with gRPC status `code`, its message naming `field` if given."""
    try:
        call()
    except grpc.RpcError as e:
        ok = e.code() == code and (field is None or field in (e.details() or ""))
        check(name, ok, f"{e.code()}: {e.details()}")
        return
    check(name, False, "succeeded")


def main():
    # The default options, as a new user writes it.
    channel = grpc.insecure_channel(f"unix://{SOCKET}")
    rt = cri_grpc.RuntimeServiceStub(channel)
    img = cri_grpc.ImageServiceStub(channel)
    t = {"timeout": TIMEOUT}

    v = rt.Version(cri.VersionRequest(version="v1"), **t)
    check("Version", v.runtime_name == "ferrocri" and v.runtime_api_version == "v1", v)

    s = rt.Status(cri.StatusRequest(verbose=True), **t)
    conditions = {c.type: c.status for c in s.status.conditions}
    check("Status", conditions == {"RuntimeReady": True, "NetworkReady": True}, conditions)

    c = rt.RuntimeConfig(cri.RuntimeConfigRequest(), **t)
    check("RuntimeConfig", c.linux.cgroup_driver == cri.CGROUPFS, c)

    rt.UpdateRuntimeConfig(
        cri.UpdateRuntimeConfigRequest(
            runtime_config=cri.RuntimeConfig(
                network_config=cri.NetworkConfig(pod_cidr="10.88.0.0/16")
            )
        ),
        **t,
    )
    check("UpdateRuntimeConfig", True)

    fs = img.ImageFsInfo(cri.ImageFsInfoRequest(), **t)
    check(
        "ImageFsInfo",
        len(fs.image_filesystems) == 1 and fs.image_filesystems[0].fs_id.mountpoint != "",
        fs,
    )

    # Images: pull (through the hack/certs.d mirror to the local registry), status, list,
    # remove.
    pulled = img.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=SCRATCH_IMAGE)), **t)
    check("PullImage", pulled.image_ref.startswith("sha256:"), pulled)
    st = img.ImageStatus(cri.ImageStatusRequest(image=cri.ImageSpec(image=SCRATCH_IMAGE)), **t)
    check(
        "ImageStatus",
        st.image.id == pulled.image_ref and SCRATCH_IMAGE in st.image.repo_tags and st.image.size > 0,
        st,
    )
    busybox = img.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=BUSYBOX)), **t)
    listed = img.ListImages(cri.ListImagesRequest(), **t)
    ids = {i.id for i in listed.images}
    check("ListImages", {pulled.image_ref, busybox.image_ref} <= ids, ids)
    img.RemoveImage(cri.RemoveImageRequest(image=cri.ImageSpec(image=SCRATCH_IMAGE)), **t)
    gone = img.ImageStatus(cri.ImageStatusRequest(image=cri.ImageSpec(image=SCRATCH_IMAGE)), **t)
    check("RemoveImage", not gone.HasField("image"), gone)

    # A pod with one container.
    pod_config = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name="python", namespace="default", uid="python-uid"),
        log_directory=os.path.join(WORK, "logs"),
        linux=cri.LinuxPodSandboxConfig(),
    )
    pod = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=pod_config), **t).pod_sandbox_id
    ps = rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod), **t)
    check(
        "RunPodSandbox/PodSandboxStatus",
        ps.status.state == cri.SANDBOX_READY and ps.status.network.ip != "",
        ps.status,
    )
    pods = rt.ListPodSandbox(
        cri.ListPodSandboxRequest(filter=cri.PodSandboxFilter(id=pod)), **t
    ).items
    check("ListPodSandbox", [p.metadata.name for p in pods] == ["python"], pods)

    container_config = cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name="shell"),
        image=cri.ImageSpec(image=BUSYBOX),
        command=["sh", "-c", "echo started; exec sleep 3600"],
        log_path="shell.log",
        linux=cri.LinuxContainerConfig(),
    )
    ctr = rt.CreateContainer(
        cri.CreateContainerRequest(
            pod_sandbox_id=pod, config=container_config, sandbox_config=pod_config
        ),
        **t,
    ).container_id
    rt.StartContainer(cri.StartContainerRequest(container_id=ctr), **t)
    cs = rt.ContainerStatus(cri.ContainerStatusRequest(container_id=ctr), **t)
    check("CreateContainer/StartContainer/ContainerStatus", cs.status.state == cri.CONTAINER_RUNNING, cs.status)
    listed = rt.ListContainers(
        cri.ListContainersRequest(filter=cri.ContainerFilter(pod_sandbox_id=pod)), **t
    ).containers
    check("ListContainers", [c.id for c in listed] == [ctr], listed)

    ex = rt.ExecSync(
        cri.ExecSyncRequest(
            container_id=ctr, cmd=["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=10
        ),
        **t,
    )
    check(
        "ExecSync",
        (ex.stdout, ex.stderr, ex.exit_code) == (b"out\n", b"err\n", 3),
        ex,
    )
    expect_error(
        "invalid ExecSync",
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: rt.ExecSync(cri.ExecSyncRequest(container_id=ctr, cmd=[], timeout=10), **t),
        field="cmd",
    )
    for name, call, request in [
        ("Exec", rt.Exec, cri.ExecRequest(container_id=ctr, cmd=["true"], stdout=True)),
        ("Attach", rt.Attach, cri.AttachRequest(container_id=ctr, stdout=True)),
        ("PortForward", rt.PortForward, cri.PortForwardRequest(pod_sandbox_id=pod, port=[80])),
    ]:
        url = call(request, **t).url
        check(name, url.startswith("http://"), url)

    stats = rt.ContainerStats(cri.ContainerStatsRequest(container_id=ctr), **t)
    check("ContainerStats", stats.stats.attributes.id == ctr, stats)
    all_stats = rt.ListContainerStats(cri.ListContainerStatsRequest(), **t)
    check("ListContainerStats", ctr in {s.attributes.id for s in all_stats.stats}, all_stats)
    pstats = rt.PodSandboxStats(cri.PodSandboxStatsRequest(pod_sandbox_id=pod), **t)
    check("PodSandboxStats", pstats.stats.attributes.id == pod, pstats)
    in_pod = {c.attributes.id for c in pstats.stats.linux.containers}
    check("PodSandboxStats: its running container", ctr in in_pod, pstats)
    descs = rt.ListMetricDescriptors(cri.ListMetricDescriptorsRequest(), **t)
    keys = {d.name: len(d.label_keys) for d in descs.descriptors}
    check("ListMetricDescriptors", "container_cpu_usage_seconds_total" in keys, descs)
    metrics = rt.ListPodSandboxMetrics(cri.ListPodSandboxMetricsRequest(), **t)
    mine = [p for p in metrics.pod_metrics if p.pod_sandbox_id == pod]
    served = [m for p in mine for c in p.container_metrics if c.container_id == ctr for m in c.metrics]
    # Every metric named by a descriptor, with as many label values as it has keys.
    fits = all(keys.get(m.name) == len(m.label_values) for m in served)
    check("ListPodSandboxMetrics", len(mine) == 1 and served and fits, metrics)
    rt.UpdateContainerResources(
        cri.UpdateContainerResourcesRequest(
            container_id=ctr, linux=cri.LinuxContainerResources(memory_limit_in_bytes=64 << 20)
        ),
        **t,
    )
    check("UpdateContainerResources", True)
    rt.ReopenContainerLog(cri.ReopenContainerLogRequest(container_id=ctr), **t)
    log = os.path.join(WORK, "logs", "shell.log")
    with open(log, encoding="utf-8") as f:
        check("CRI log", " stdout F started" in f.read(), log)

    rt.StopContainer(cri.StopContainerRequest(container_id=ctr, timeout=2), **t)
    cs = rt.ContainerStatus(cri.ContainerStatusRequest(container_id=ctr), **t)
    check("StopContainer", cs.status.state == cri.CONTAINER_EXITED, cs.status)
    rt.RemoveContainer(cri.RemoveContainerRequest(container_id=ctr), **t)
    expect_error(
        "RemoveContainer",
        grpc.StatusCode.NOT_FOUND,
        lambda: rt.ContainerStatus(cri.ContainerStatusRequest(container_id=ctr), **t),
    )
    rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod), **t)
    ps = rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod), **t)
    check("StopPodSandbox", ps.status.state == cri.SANDBOX_NOTREADY, ps.status)
    rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod), **t)
    expect_error(
        "RemovePodSandbox",
        grpc.StatusCode.NOT_FOUND,
        lambda: rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod), **t),
    )

    # Bad requests get the right code, naming the field.
    expect_error(
        "invalid RunPodSandbox",
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: rt.RunPodSandbox(
            cri.RunPodSandboxRequest(
                config=cri.PodSandboxConfig(metadata=cri.PodSandboxMetadata(name="python"))
            ),
            **t,
        ),
        field="config.metadata.namespace",
    )
    expect_error(
        "unknown container",
        grpc.StatusCode.NOT_FOUND,
        lambda: rt.ContainerStatus(cri.ContainerStatusRequest(container_id="0" * 64), **t),
    )
    expect_error(
        "invalid PullImage",
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: img.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image="Not//A Reference")), **t),
        field="image",
    )
    channel.close()

    # Other authorities a client may send on a unix socket: all of them work.
    for authority in ["localhost", "/run/ferrocri/ferrocri.sock", "ferrocri.sock:0"]:
        with grpc.insecure_channel(
            f"unix://{SOCKET}", options=[("grpc.default_authority", authority)]
        ) as other:
            try:
                v = cri_grpc.RuntimeServiceStub(other).Version(cri.VersionRequest(), **t)
                check(f"authority {authority!r}", v.runtime_name == "ferrocri", v)
            except grpc.RpcError as e:
                check(f"authority {authority!r}", False, f"{e.code()}: {e.details()}")


if __name__ == "__main__":
    started = time.monotonic()
    try:
        main()
    except grpc.RpcError as e:
        check("unexpected RPC error", False, f"{e.code()}: {e.details()}")
    print(f"{len(failures)} failed, {time.monotonic() - started:.1f}s")
    sys.exit(1 if failures else 0)
