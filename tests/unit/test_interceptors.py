"""The request interceptor on streaming handlers of every shape, on a bare grpc.aio server.

The gateway's own services are unary today; these handlers stand in for streaming RPCs to come, with
``common.Audio`` as the message (its ``mime_type`` is a string field to break).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gateway.api.v1 import common_pb2 as common
from gateway.core.errors import InvalidInput, Overloaded, Unauthenticated
from gateway.grpc.interceptors import RETRY_PUSHBACK_HEADER, RequestInterceptor, checked, tenant_var
from policies.model import Tenant

AUTH = (("authorization", "Bearer right"),)
ACME = Tenant(name="acme", key_sha256="a" * 64, default_policy="default")
SERVICE = "gateway.test.v1.Probe"


def authenticate(metadata: tuple[tuple[str, str | bytes], ...]) -> Tenant:
    if ("authorization", "Bearer right") not in metadata:
        raise Unauthenticated("missing API key")
    return ACME


def audio(name: str) -> common.Audio:
    return common.Audio(mime_type=name)


def tenant_name() -> str:
    tenant = tenant_var.get()
    return tenant.name if tenant else "-"


async def collect(requests: AsyncIterator[common.Audio], context: grpc.aio.ServicerContext) -> common.Audio:
    names = [r.mime_type async for r in requests]
    return audio(",".join([tenant_name(), *names]))


async def echo(
    requests: AsyncIterator[common.Audio], context: grpc.aio.ServicerContext
) -> AsyncIterator[common.Audio]:
    async for r in requests:
        if r.mime_type == "overload":
            raise Overloaded("too busy; retry in 0.5 s", 0.5)
        yield audio(f"{tenant_name()}:{r.mime_type}")


async def repeat(request: common.Audio, context: grpc.aio.ServicerContext) -> None:
    # The writer form: no generator, responses go through context.write.
    for i in range(3):
        await context.write(audio(f"{request.mime_type}#{i}"))


async def count(request: common.Audio, context: grpc.aio.ServicerContext) -> AsyncIterator[common.Audio]:
    for i in range(3):
        yield audio(f"{request.mime_type}#{i}")
    raise InvalidInput("stopped after three")


def handler(kind: str, behaviour: object) -> grpc.RpcMethodHandler:
    make = getattr(grpc, f"{kind}_rpc_method_handler")
    return make(
        behaviour,
        request_deserializer=common.Audio.FromString,
        response_serializer=common.Audio.SerializeToString,
    )


@pytest.fixture(scope="module")
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server(interceptors=[RequestInterceptor(authenticate)])
    methods = {
        "Collect": handler("stream_unary", collect),
        "Echo": handler("stream_stream", echo),
        "Repeat": handler("unary_stream", repeat),
        "Count": handler("unary_stream", count),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, methods),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield ch
    await server.stop(None)


def method(channel: grpc.aio.Channel, kind: str, name: str):
    return getattr(channel, kind)(
        f"/{SERVICE}/{name}",
        request_serializer=lambda m: m if isinstance(m, bytes) else m.SerializeToString(),
        response_deserializer=common.Audio.FromString,
    )


BAD_UTF8 = audio("QQ").SerializeToString().replace(b"QQ", b"\xff\xfe")


async def test_streamed_requests_are_parsed_and_authenticated(channel):
    reply = await method(channel, "stream_unary", "Collect")(
        iter([audio("a"), audio("b")]), metadata=AUTH, timeout=5
    )
    assert reply.mime_type == "acme,a,b"
    replies = [
        r.mime_type async for r in method(channel, "stream_stream", "Echo")(iter([audio("x")]), metadata=AUTH)
    ]
    assert replies == ["acme:x"]
    writer = [r.mime_type async for r in method(channel, "unary_stream", "Repeat")(audio("r"), metadata=AUTH)]
    assert writer == ["r#0", "r#1", "r#2"]


@pytest.mark.parametrize("name,kind", [("Collect", "stream_unary"), ("Echo", "stream_stream")])
async def test_a_malformed_message_mid_stream_is_invalid_argument(channel, name, kind):
    call = method(channel, kind, name)(iter([audio("fine"), BAD_UTF8]), metadata=AUTH, timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if kind == "stream_unary":
            await call
        else:
            [r async for r in call]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        "the request is not a valid gateway.api.v1.Audio: String field had bad UTF-8"
        in caught.value.details()
    )


async def test_a_malformed_request_to_a_response_stream_is_invalid_argument_even_without_a_key(channel):
    for metadata in ((), AUTH):
        call = method(channel, "unary_stream", "Repeat")(BAD_UTF8, metadata=metadata, timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            [r async for r in call]
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_stream_without_a_key_is_refused_before_any_message_is_read(channel):
    call = method(channel, "stream_stream", "Echo")(iter([audio("x")]), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        [r async for r in call]
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_errors_mid_stream_keep_the_replies_sent_and_carry_their_status(channel):
    received: list[str] = []
    call = method(channel, "unary_stream", "Count")(audio("c"), metadata=AUTH, timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for r in call:
            received.append(r.mime_type)
    assert received == ["c#0", "c#1", "c#2"]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "stopped after three"

    call = method(channel, "stream_stream", "Echo")(iter([audio("x"), audio("overload")]), metadata=AUTH)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        [r async for r in call]
    error = caught.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert dict(error.trailing_metadata())[RETRY_PUSHBACK_HEADER] == "500"
    status = rpc_status.from_call(error)
    info = error_details_pb2.RetryInfo()
    assert status is not None and status.details[0].Unpack(info)
    assert info.retry_delay.ToMilliseconds() == 500


async def test_grpc_aio_turns_any_deserializer_failure_into_unknown():
    # Why unary requests are parsed inside the call rather than by a checking deserializer: grpc.aio
    # reports whatever the deserializer raises as UNKNOWN before any interceptor code sees the request.
    async def identity(request: common.Audio, context: grpc.aio.ServicerContext) -> common.Audio:
        return request

    server = grpc.aio.server()
    wrapped = grpc.unary_unary_rpc_method_handler(
        identity,
        request_deserializer=checked(common.Audio.FromString),
        response_serializer=common.Audio.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Wrapped": wrapped}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await method(ch, "unary_unary", "Wrapped")(BAD_UTF8, timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNKNOWN
            assert (await method(ch, "unary_unary", "Wrapped")(audio("ok"), timeout=5)).mime_type == "ok"
    finally:
        await server.stop(None)
