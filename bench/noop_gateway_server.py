"""A gRPC server with the gateway's Transcribe method that does nothing but answer a fixed response.

The baseline for the cache-hit benchmark: the same service, message sizes and server options as the
gateway, with none of its work. Run by ``harness.HelperServer``:
``python -m bench.noop_gateway_server RESPONSE_FILE`` prints ``ready <host:port>`` and serves until its
stdin closes.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.settings import ServerSettings


class NoopGateway(pb_grpc.AudioGatewayServicer):
    def __init__(self, response: pb.TranscribeResponse) -> None:
        self._response = response

    async def Transcribe(
        self, request: pb.TranscribeRequest, context: grpc.aio.ServicerContext
    ) -> pb.TranscribeResponse:
        return self._response


async def serve(response: pb.TranscribeResponse) -> None:
    limit = ServerSettings().max_message_bytes
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 0),
        ]
    )
    pb_grpc.add_AudioGatewayServicer_to_server(NoopGateway(response), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"ready 127.0.0.1:{port}", flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await server.stop(1)


if __name__ == "__main__":
    asyncio.run(serve(pb.TranscribeResponse.FromString(Path(sys.argv[1]).read_bytes())))
