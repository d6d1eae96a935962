"""The sample automations of `deployments/automations/`, created on the Prefect server (`seqcast automation`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml

#: The sample automation for degraded series.
DEGRADED = Path(__file__).resolve().parents[1] / "deployments" / "automations" / "series-degraded.yaml"


def degraded_automation(webhook_block_id: UUID, template: Path = DEGRADED) -> Any:
    """The degraded-series automation, its webhook action calling the Webhook block with this id."""
    from prefect.events.schemas.automations import AutomationCore

    spec = yaml.safe_load(template.read_text())
    for action in spec["actions"]:
        if action["type"] == "call-webhook":
            action["block_document_id"] = str(webhook_block_id)
    return AutomationCore.model_validate(spec)


def create_degraded_automation(webhook_block: str) -> UUID:
    """Create the degraded-series automation on the configured server (replacing one of the same name), calling
    the Prefect Webhook block named `webhook_block`. Returns its id.

    Raises ValueError when there is no such block.
    """
    from prefect.blocks.webhook import Webhook
    from prefect.client.orchestration import get_client

    try:
        block: Any = Webhook.load(webhook_block, _sync=True)  # type: ignore[call-arg]
    except ValueError as exc:
        raise ValueError(f"no Webhook block named {webhook_block!r} on the Prefect server: create it first") from exc
    automation = degraded_automation(block._block_document_id)

    async def create() -> UUID:
        async with get_client() as client:
            for existing in await client.read_automations_by_name(automation.name):
                await client.delete_automation(existing.id)
            created: UUID = await client.create_automation(automation)
            return created

    return asyncio.run(create())
