"""The OpenAI-compatible HTTP door: a FastAPI app served by uvicorn in the gRPC server's event loop.

Thin converters, like the gRPC servicers: an endpoint turns OpenAI's request into a domain request,
calls the Router (the one pipeline), and turns the result into OpenAI's response. Each endpoint module
holds one ``APIRouter``; :func:`gateway.http.app.create_http_app` registers them.
"""
