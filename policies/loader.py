"""Policy files: named policies and the tenants that use them, validated as a whole.

::

    policies:
      - name: default
        privacy: any
        objective: cost
      - name: private
        privacy: local_only
    tenants:
      - name: acme
        key_sha256: 9f86d081...      # sha256 of the API key: `audio-gateway hash-key`
        default_policy: default
        policies: [private]
        monthly_budget_usd: "50"

A file without tenants leaves authentication off (every caller is "anonymous"
and uses the policy named "default", or the first one).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from gateway.core import yamlfile
from gateway.core.yamlfile import ConfigFileError
from policies.model import ANONYMOUS, DEFAULT_POLICY, Policy, Tenant

M = TypeVar("M", bound=BaseModel)


class PolicyFileError(ConfigFileError):
    pass


@dataclass(frozen=True)
class PolicyBook:
    policies: dict[str, Policy]
    tenants_by_key: dict[str, Tenant] = field(default_factory=dict)
    source: str = "built-in"

    @property
    def auth_required(self) -> bool:
        return bool(self.tenants_by_key)

    @property
    def anonymous(self) -> Tenant:
        default = DEFAULT_POLICY.name if DEFAULT_POLICY.name in self.policies else next(iter(self.policies))
        # Without tenants there is no one to restrict: every policy may be asked for.
        return ANONYMOUS.model_copy(update={"default_policy": default, "policies": frozenset(self.policies)})

    def tenant_for_key(self, api_key: str) -> Tenant | None:
        return self.tenants_by_key.get(hash_key(api_key))


BUILTIN = PolicyBook(policies={DEFAULT_POLICY.name: DEFAULT_POLICY})


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def load_policy_file(path: Path) -> PolicyBook:
    raw, document = yamlfile.load(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("policies"), list) or not raw["policies"]:
        raise PolicyFileError(f"{path}: expected a non-empty top-level 'policies:' list")
    unknown = set(raw) - {"policies", "tenants"}
    if unknown:
        raise PolicyFileError(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}")

    policies: dict[str, Policy] = {}
    lines = yamlfile.item_lines(document, "policies")
    for index, entry in enumerate(raw["policies"]):
        policy = _validate(Policy, entry, path, lines, index)
        if policy.name in policies:
            raise PolicyFileError(
                f"{yamlfile.where(path, lines, index)}: policy {policy.name!r} is declared twice"
            )
        policies[policy.name] = policy

    tenants: dict[str, Tenant] = {}
    names: set[str] = set()
    lines = yamlfile.item_lines(document, "tenants")
    for index, entry in enumerate(raw.get("tenants") or []):
        tenant = _validate(Tenant, entry, path, lines, index)
        where = yamlfile.where(path, lines, index)
        missing = sorted(({tenant.default_policy} | tenant.policies) - set(policies))
        if missing:
            raise PolicyFileError(
                f"{where}: tenant {tenant.name!r} names unknown policies {', '.join(missing)}"
            )
        if tenant.name in names or tenant.key_sha256 in tenants:
            raise PolicyFileError(f"{where}: tenant {tenant.name!r} repeats a name or key hash")
        names.add(tenant.name)
        tenants[tenant.key_sha256] = tenant
    return PolicyBook(policies=policies, tenants_by_key=tenants, source=str(path))


def _validate(model: type[M], entry: object, path: Path, lines: list[int], index: int) -> M:
    where = yamlfile.where(path, lines, index)
    if not isinstance(entry, dict):
        raise PolicyFileError(f"{where}: each entry must be a mapping")
    try:
        return model.model_validate(entry)
    except ValidationError as exc:
        raise PolicyFileError(f"{where}: {yamlfile.describe(exc)}") from None
