"""Reflection answers under v1 (what grpcurl asks first) and v1alpha; the shipped health.proto matches."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from gateway.grpc.server import GatewayServer
from providers.testing import FakeSynthesizer, FakeTranscriber
from tests.conftest import local_settings

ROOT = Path(__file__).resolve().parents[2]


async def _ask(
    channel: grpc.aio.Channel, package: str, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    # v1 and v1alpha share their messages field for field; only the method path differs.
    call = channel.stream_stream(
        f"/{package}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    async for response in call(iter([request])):
        return response
    raise AssertionError(f"no {package} reflection response")


async def test_reflection_answers_under_v1_and_v1alpha():
    server = GatewayServer(local_settings(), providers=[FakeTranscriber(), FakeSynthesizer()])
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            listed = {}
            for package in ("grpc.reflection.v1", "grpc.reflection.v1alpha"):
                reply = await _ask(channel, package, reflection_pb2.ServerReflectionRequest(list_services=""))
                listed[package] = {s.name for s in reply.list_services_response.service}
            assert listed["grpc.reflection.v1"] == listed["grpc.reflection.v1alpha"]
            assert {
                "gateway.api.v1.AudioGateway",
                "gateway.api.v1.CostReports",
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            } <= listed["grpc.reflection.v1"]

            # The v1 service can describe itself, so a client needs no reflection.proto of its own.
            request = reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="grpc.reflection.v1.ServerReflection"
            )
            reply = await _ask(channel, "grpc.reflection.v1", request)
            assert not reply.HasField("error_response"), reply.error_response.error_message
            described = descriptor_pb2.FileDescriptorProto.FromString(
                reply.file_descriptor_response.file_descriptor_proto[0]
            )
            assert described.package == "grpc.reflection.v1"
            method = described.service[0].method[0]
            assert method.name == "ServerReflectionInfo"
            assert method.input_type == ".grpc.reflection.v1.ServerReflectionRequest"
            assert method.client_streaming and method.server_streaming
            fields = {m.name: m.field for m in described.message_type}
            assert all(
                f.type_name.startswith(".grpc.reflection.v1.")
                for m in fields.values()
                for f in m
                if f.type_name
            )
    finally:
        await server.stop(grace_s=1)


def test_the_shipped_health_proto_is_the_one_served(tmp_path):
    out = tmp_path / "health.pb"
    subprocess.run(
        [
            *(sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'protos'}"),
            *(f"--descriptor_set_out={out}", "grpc/health/v1/health.proto"),
        ],
        check=True,
    )
    shipped = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    served = descriptor_pb2.FileDescriptorProto()
    health_pb2.DESCRIPTOR.CopyToProto(served)
    for proto in (shipped, served):
        proto.ClearField("name")  # grpcio-health-checking compiles it as grpc_health/v1/health.proto
        for message in (*proto.message_type, *(n for m in proto.message_type for n in m.nested_type)):
            for field in message.field:
                field.ClearField("json_name")  # protoc adds it; the compiled-in descriptor leaves it out
    assert shipped == served
