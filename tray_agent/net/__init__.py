"""Network layer: asyncio + websockets + a stdlib HTTP client (net.http). No Qt, no aiohttp."""
