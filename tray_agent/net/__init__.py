"""Network layer: asyncio + websockets + aiohttp client. No Qt."""
