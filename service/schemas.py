"""The request bodies of the API, as the official SDK and endpoint send them."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    # Newer SDKs may send fields we do not use; ignore them rather than fail.
    model_config = ConfigDict(extra="ignore")


class EndpointRegistration(_Body):
    endpoint_name: str = Field(min_length=1, max_length=256)
    display_name: str | None = Field(default=None, max_length=256)
    metadata: dict[str, Any] | None = None
    multi_user: bool | None = None
    public: bool | None = None
    high_assurance: bool | None = None
    allowed_functions: list[uuid.UUID] | None = Field(default=None, max_length=10000)
    admins: list[uuid.UUID] | None = Field(default=None, max_length=1000)
    authentication_policy: uuid.UUID | None = None
    subscription_uuid: uuid.UUID | None = None

    def settings(self) -> dict[str, Any]:
        """What the service keeps of the registration besides name and metadata."""
        return {"public": bool(self.public), "high_assurance": bool(self.high_assurance),
                "multi_user": bool(self.multi_user),
                "admins": [str(a) for a in self.admins] if self.admins is not None else None,
                "authentication_policy": str(self.authentication_policy) if self.authentication_policy else None,
                "subscription_uuid": str(self.subscription_uuid) if self.subscription_uuid else None}


class FunctionRegistration(_Body):
    function_name: str = Field(min_length=1, max_length=512)
    function_code: str = Field(min_length=1)
    # False: function_code is plain source text defining function_name (the SDK's
    # register_source_code); the service serializes it as PureSourceTextInspect.
    serialized: bool = True
    description: str | None = None
    meta: dict[str, Any] | None = None
    public: bool | None = None
    group: uuid.UUID | None = None


class Submission(_Body):
    tasks: dict[uuid.UUID, list[str]]
    create_queue: bool = False
    task_group_id: uuid.UUID | None = None
    resource_specification: dict[str, Any] | None = None
    user_endpoint_config: dict[str, Any] | None = None
    user_runtime: dict[str, Any] | None = None
    result_serializers: list[str] | None = None


class BatchStatusRequest(_Body):
    task_ids: list[uuid.UUID] = Field(max_length=10000)
