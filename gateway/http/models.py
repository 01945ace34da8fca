"""OpenAI's ``model`` field, mapped to the gateway's routing; and ``GET /v1/models``.

The mapping, used by every endpoint (:func:`model_routing`):

- ``policy:<name>``: route by that policy (the tenant must be allowed it: 403 otherwise);
- ``provider:<name>``: pin that provider, under the tenant's default policy (which may still refuse it);
- anything else (``whisper-1``, ``gpt-4o-transcribe``, ``tts-1``…): the tenant's default policy, so a
  program written for OpenAI works unchanged.

A ``policy:`` or ``provider:`` name the gateway does not have is 404 ``model_not_found``.
``GET /v1/models`` lists the ids this tenant may use: its policies, then every provider one of them admits.
"""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from gateway.app import App
from gateway.core.domain import Routing
from gateway.core.errors import UnknownModel, clip
from gateway.http.callers import Caller, gateway_of
from gateway.http.errors import ERROR_RESPONSES
from policies.model import Policy, Tenant
from policies.rank import policy_exclusion

POLICY_PREFIX = "policy:"
PROVIDER_PREFIX = "provider:"
OWNER = "audio-gateway"


def model_routing(model: str, gateway: App) -> Routing:
    """The routing wishes an OpenAI ``model`` value stands for (see the module docstring)."""
    if model.startswith(POLICY_PREFIX):
        name = model.removeprefix(POLICY_PREFIX)
        if name not in gateway.policies.book.policies:
            raise UnknownModel(
                f"the model {clip(model)!r} names no policy of this gateway; GET /v1/models lists the "
                "policies and providers this key may use"
            )
        return Routing(policy=name)
    if model.startswith(PROVIDER_PREFIX):
        name = model.removeprefix(PROVIDER_PREFIX)
        try:
            gateway.catalogue.get(name)
        except KeyError:
            raise UnknownModel(
                f"the model {clip(model)!r} names no provider of this gateway; GET /v1/models lists the "
                "policies and providers this key may use"
            ) from None
        return Routing(provider=name)
    return Routing()


class GatewayModelInfo(BaseModel):
    kind: Literal["policy", "provider"]
    # policy: whether it is the tenant's default (what plain OpenAI model names route by).
    default: bool = False
    # provider: the vendor's or engine's model, what it does, and where it runs.
    model: str | None = None
    operations: list[str] | None = None
    features: list[str] | None = None
    locality: str | None = None


class ModelObject(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    gateway: GatewayModelInfo


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]


def tenant_policies(gateway: App, tenant: Tenant) -> list[Policy]:
    """The policies ``tenant`` may route by, its default first."""
    book = gateway.policies.book.policies
    names = [tenant.default_policy, *sorted(tenant.policies - {tenant.default_policy})]
    return [book[name] for name in names if name in book]


def available_models(gateway: App, tenant: Tenant, created: int) -> list[ModelObject]:
    policies = tenant_policies(gateway, tenant)
    models = [
        ModelObject(
            id=f"{POLICY_PREFIX}{policy.name}",
            created=created,
            owned_by=OWNER,
            gateway=GatewayModelInfo(kind="policy", default=policy.name == tenant.default_policy),
        )
        for policy in policies
    ]
    for candidate in gateway.catalogue.candidates():
        caps = candidate.capabilities
        if all(policy_exclusion(candidate.name, caps, p, p.privacy) is not None for p in policies):
            continue
        models.append(
            ModelObject(
                id=f"{PROVIDER_PREFIX}{candidate.name}",
                created=created,
                owned_by=OWNER,
                gateway=GatewayModelInfo(
                    kind="provider",
                    model=candidate.model,
                    operations=sorted(op.value for op in caps.operations),
                    features=sorted(caps.features),
                    locality=caps.locality.value,
                ),
            )
        )
    return models


router = APIRouter(tags=["models"])
# Models have no creation date here; the process start stands in for it, as OpenAI's field is required.
_STARTED = int(time.time())


@router.get(
    "/v1/models", response_model=ModelList, response_model_exclude_none=True, responses=ERROR_RESPONSES
)
async def list_models(request: Request, ctx: Caller) -> ModelList:
    """The policies and providers this API key may route by, as OpenAI model ids."""
    return ModelList(data=available_models(gateway_of(request), ctx.tenant, _STARTED))


@router.get(
    "/v1/models/{model}",
    response_model=ModelObject,
    response_model_exclude_none=True,
    responses=ERROR_RESPONSES,
)
async def retrieve_model(model: str, request: Request, ctx: Caller) -> ModelObject:
    """One of the ids ``GET /v1/models`` lists."""
    for item in available_models(gateway_of(request), ctx.tenant, _STARTED):
        if item.id == model:
            return item
    raise UnknownModel(f"the model {clip(model)!r} is not one this key may use; see GET /v1/models")
