"""Where a webhook URL leads: refused when it is a loopback, private or link-local address
(server-side request forgery: an endpoint must not reach into the engine's own network),
unless CAMPAIGN_WEBHOOK_ALLOW_PRIVATE=1.

Checked when a campaign is given its URL, and again on every connection the deliverer makes
(delivery.GuardedResolver), so that a name re-pointed at a private address later is refused too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import replace
from urllib.parse import urlsplit

from campaign.config import Settings
from campaign.models import CampaignSpec

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookUrlRefused(Exception):
    """A webhook URL leads somewhere it may not go, or nowhere; the message says where."""


def _kind(address: Address) -> str | None:
    """Why an address is refused (None: it is a public one)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_private:
        return "private"
    if not address.is_global or address.is_multicast:
        return "non-public"
    return None


def refusal(host: str, address: str) -> str | None:
    """Why `host`, at `address`, is refused (None: allowed)."""
    kind = _kind(ipaddress.ip_address(address.split("%", 1)[0]))
    if kind is None:
        return None
    shown = host if host == address else f"{host} resolves to {address}, which"
    return (
        f"{shown} is a {kind} address; webhooks go to public endpoints only "
        "(CAMPAIGN_WEBHOOK_ALLOW_PRIVATE=1 allows it)"
    )


async def check_destination(url: str, *, allow_private: bool) -> None:
    """Raise WebhookUrlRefused when the URL's host is, or resolves to, a refused address."""
    if allow_private:
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
        addresses = [host]
    except ValueError:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as error:
            raise WebhookUrlRefused(f"cannot resolve {host}: {error.strerror or error}") from None
        addresses = sorted({str(info[4][0]) for info in infos})
    for address in addresses:
        reason = refusal(host, address)
        if reason is not None:
            raise WebhookUrlRefused(reason)


async def campaign_endpoint(spec: CampaignSpec, settings: Settings, *, given: bool) -> CampaignSpec:
    """A new campaign's webhook endpoint: its own URL (`given`: --webhook-url, or the API's
    `webhook-url`), else CAMPAIGN_WEBHOOK_URL. Raises WebhookUrlRefused, its message starting
    with where the URL came from, when it leads to a private address (`campaign load` and the
    HTTP API both come here)."""
    url = spec.webhook_url if given else settings.webhook_url
    if url is None:
        return spec
    try:
        await check_destination(url, allow_private=settings.webhook_allow_private)
    except WebhookUrlRefused as error:
        source = "--webhook-url" if given else "CAMPAIGN_WEBHOOK_URL"
        raise WebhookUrlRefused(f"{source}: {error}") from None
    return replace(spec, webhook_url=url)
