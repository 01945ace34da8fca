"""Thin servicers: convert the request, call the router, convert the result."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import grpc

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.core.errors import InvalidInput
from gateway.grpc import converters, streaming
from gateway.grpc.interceptors import request_id_var, tenant_var
from gateway.routing.router import RequestContext, Router
from gateway.routing.streaming import DRAIN_S, StreamService, drain


class AudioGatewayServicer(pb_grpc.AudioGatewayServicer):
    def __init__(
        self, router: Router, default_timeout_s: float, streams: StreamService | None = None
    ) -> None:
        self._router = router
        self._default_timeout_s = default_timeout_s
        self._streams = streams
        self._transcripts = converters.TranscriptBodies()

    def _context(self, context: grpc.aio.ServicerContext, limit_s: float | None = None) -> RequestContext:
        remaining = context.time_remaining()
        limit = self._default_timeout_s if limit_s is None else limit_s
        budget = limit if remaining is None else min(remaining, limit)
        tenant = tenant_var.get()
        if tenant is None:
            raise RuntimeError("the request interceptor did not authenticate this call")
        return RequestContext(
            request_id=request_id_var.get(), deadline=time.monotonic() + budget, tenant=tenant
        )

    async def Transcribe(
        self, request: pb.TranscribeRequest, context: grpc.aio.ServicerContext
    ) -> pb.TranscribeResponse:
        fmt = converters.transcript_format(request)
        result = await self._router.transcribe(converters.transcribe_request(request), self._context(context))
        return self._transcripts.response(result, fmt)

    async def TranscribeProgress(
        self, request: pb.TranscribeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.TranscribeProgressEvent]:
        fmt = converters.transcript_format(request)
        events = self._router.transcribe_progress(
            converters.transcribe_request(request), self._context(context)
        )
        # Closed here, in the call's context, when the caller leaves: that cancels the transcription.
        async with contextlib.aclosing(events):
            async for event in events:
                yield converters.transcribe_progress_event(event, fmt)

    async def Synthesize(
        self, request: pb.SynthesizeRequest, context: grpc.aio.ServicerContext
    ) -> pb.SynthesizeResponse:
        result = await self._router.synthesize(converters.synthesize_request(request), self._context(context))
        return converters.synthesize_response(result)

    async def StreamSynthesize(
        self, request: pb.SynthesizeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.SynthesizeChunk]:
        chunks = self._router.stream_synthesize(
            converters.synthesize_request(request), self._context(context)
        )
        async for chunk in chunks:
            yield converters.synthesize_chunk(chunk)

    async def Understand(
        self, request: pb.UnderstandRequest, context: grpc.aio.ServicerContext
    ) -> pb.UnderstandResponse:
        result = await self._router.understand(converters.understand_request(request), self._context(context))
        return converters.understand_response(result)

    async def ExplainRoute(
        self, request: pb.ExplainRouteRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExplainRouteResponse:
        result = await self._router.explain(converters.explain_request(request), self._context(context))
        return converters.explain_response(result)

    async def StreamTranscribe(
        self, request_iterator: AsyncIterator[pb.StreamTranscribeRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamTranscribeResponse]:
        if self._streams is None:
            raise RuntimeError("this servicer was built without a stream service")
        requests = aiter(request_iterator)
        try:
            start = await streaming.first_message(requests)
        except InvalidInput:
            await drain(requests, DRAIN_S)
            raise
        # A stream lasts as long as its audio: its own limits bound it, not the unary default timeout.
        ctx = self._context(context, self._streams.settings.max_duration_s * 2)
        outputs = self._streams.transcribe(start, streaming.stream_inputs(requests), ctx)
        async for output in outputs:
            yield streaming.stream_response(output)
